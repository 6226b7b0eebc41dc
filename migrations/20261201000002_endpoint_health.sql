-- Endpoint health: each scenario's during-call URL and after-call URL is an
-- endpoint with a state. `healthy` → `failing` after CALLHOOK_FAILING_AFTER
-- consecutive failed attempts; → `paused` after CALLHOOK_PAUSE_AFTER with no
-- success (its deliveries wait, parked, and one is sent as a probe every
-- CALLHOOK_PROBE_INTERVAL); → `disabled` after CALLHOOK_DISABLE_AFTER with no
-- success, or at once on a 410 (nothing is sent until an operator enables
-- it). Any success resets the count; a probe's success makes it `healthy`.
create table endpoints (
    scenario_id          uuid        not null references scenarios (id) on delete cascade,
    kind                 text        not null check (kind in ('during_call', 'after_call')),
    state                text        not null default 'healthy'
                         check (state in ('healthy', 'failing', 'paused', 'disabled')),
    -- when it entered its state
    since                timestamptz not null default now(),
    consecutive_failures integer     not null default 0,
    -- the first failed attempt with no success after it (null after a success)
    failing_since        timestamptz,
    last_success_at      timestamptz,
    last_error           text,
    -- paused by its health: when the next probe may go; null while not
    -- paused, and when an operator paused it (no probes then)
    next_probe_at        timestamptz,
    updated_at           timestamptz not null default now(),
    primary key (scenario_id, kind)
);

insert into endpoints (scenario_id, kind)
select s.id, k.kind
  from scenarios s cross join (values ('during_call'), ('after_call')) as k (kind);

-- Paused and disabled endpoints' deliveries wait parked: pending, no due
-- time, outside the due index's range, so claims never walk them however
-- many there are. A recovery or an operator's enable drains them.
alter table deliveries
    add column parked boolean not null default false,
    drop constraint deliveries_pending_has_due,
    add constraint deliveries_pending_has_due
        check (state <> 'pending' or next_attempt_at is not null or blocked_by is not null or parked),
    add constraint deliveries_parked_is_pending check (not parked or state = 'pending');

-- "The parked deliveries of this endpoint, oldest first" (probes, drains).
create index deliveries_parked_idx on deliveries (scenario_id, kind, id) where parked;

-- Operator events (endpoint.failing, …): deliveries of their own kind, sent
-- to CALLHOOK_OPERATOR_WEBHOOK_URL through the same queue and retries; they
-- belong to no call and no scenario (the scenario is in the payload).
alter table deliveries
    drop constraint deliveries_kind_check,
    add constraint deliveries_kind_check
        check (kind in ('during_call', 'after_call', 'operator_event')),
    alter column call_id drop not null,
    add constraint deliveries_call_or_operator_event
        check ((kind = 'operator_event') = (call_id is null));

-- One row per endpoint, for psql: its state and how many deliveries wait.
create view endpoint_health as
select e.scenario_id,
       s.name                 as scenario_name,
       e.kind,
       case e.kind when 'during_call' then s.during_call_url else s.after_call_url end as url,
       e.state,
       e.since,
       e.last_success_at,
       e.last_error,
       e.consecutive_failures,
       (select count(*) from deliveries d
         where d.scenario_id = e.scenario_id and d.kind = e.kind and d.state = 'pending')
                              as deliveries_waiting
  from endpoints e
  join scenarios s on s.id = e.scenario_id;

comment on view endpoint_health is
    'One row per endpoint (a scenario''s during-call or after-call URL): healthy, failing, paused or disabled, and how many deliveries wait. Read-only.';
