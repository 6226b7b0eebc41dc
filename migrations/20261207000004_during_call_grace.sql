-- Stale during-call webhooks expire. When a call's end arrives and its
-- during-call delivery is not delivered yet, that delivery gets
-- CALLHOOK_DURING_CALL_GRACE (or the scenario's `during_call_grace_secs`)
-- more: `expires_at`, and it is due by then at the latest. A dispatcher that
-- takes it after that moment stores it `cancelled` with `last_error` =
-- 'call_ended' (which releases its after-call delivery) instead of sending
-- it. An operator's requeue clears `expires_at`.
alter table deliveries
    add column expires_at timestamptz;

alter table scenarios
    add column during_call_grace_secs integer
        check (during_call_grace_secs between 0 and 86400);

-- Parked ones (their endpoint paused or disabled) are not claimed: the
-- dispatchers' once-a-second look cancels those whose moment has passed.
create index deliveries_expiring_parked_idx on deliveries (expires_at)
    where parked and state = 'pending' and expires_at is not null;
