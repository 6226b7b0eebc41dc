-- Per-call order under an operator's pause.
--
-- An after-call webhook waits for its call's during-call webhook while that
-- is pending. Until now it stopped waiting as soon as the during-call
-- endpoint held its deliveries (paused or disabled), so an operator pausing a
-- during-call endpoint released the waiting after-call webhooks ahead of
-- their during-call ones. The rule is now: a during-call endpoint lets its
-- calls' after-call webhooks go without it only when its health held it
-- (paused by its failures, with probes; or disabled), never because an
-- operator paused it (`next_probe_at` is null then).
create function during_call_released(state text, next_probe_at timestamptz)
returns boolean
language sql immutable parallel safe
as $$ select state = 'disabled' or (state = 'paused' and next_probe_at is not null) $$;

comment on function during_call_released(text, timestamptz) is
    'Whether a during-call endpoint in this state lets its calls'' after-call webhooks go without waiting for their during-call ones (held by its health), as opposed to an operator''s pause.';
