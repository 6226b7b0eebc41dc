-- Calls as the telephony side reported them. `id` is the telephony side's own
-- unique call number. The *_hash columns fingerprint the start and end events
-- so a repeat is answered idempotently and a conflicting repeat refused.
create table calls (
    id                text primary key,
    -- kept when the scenario is deleted, for history
    scenario_id       uuid references scenarios (id) on delete set null,
    caller            text        not null,
    callee            text        not null,
    started_at        timestamptz not null,
    visit_id          text,
    marker            text,
    order_id          bigint,
    google_client_id  text,
    landing_page      text,
    domain            text,
    city              text,
    country           text,
    ip                text,
    first_visit       text,
    referrer          text,
    utm_source        text,
    utm_medium        text,
    utm_campaign      text,
    utm_term          text,
    utm_content       text,
    roistat_param_1   text,
    roistat_param_2   text,
    roistat_param_3   text,
    roistat_param_4   text,
    roistat_param_5   text,
    metrika_client_id text,
    source_level_1    text,
    source_level_2    text,
    status            text,
    duration          integer check (duration >= 0),
    file_id           text,
    link              text,
    ended_at          timestamptz,
    -- null when the call was only ever ended (no start event)
    start_hash        text,
    end_hash          text,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);

-- Operators look calls up by scenario and time.
create index calls_scenario_started_idx on calls (scenario_id, started_at desc);

-- The delivery queue and its log: one row per (call, kind). `payload` holds
-- the exact body bytes as text (jsonb would reorder keys). A pending row is
-- due at next_attempt_at; a claimed row carries a lease_token and its
-- next_attempt_at is pushed to the lease's end, so a row whose worker died
-- becomes due again by itself.
create table deliveries (
    id              uuid primary key,
    call_id         text        not null references calls (id) on delete cascade,
    scenario_id     uuid references scenarios (id) on delete set null,
    kind            text        not null check (kind in ('during_call', 'after_call')),
    payload         text        not null,
    state           text        not null default 'pending'
                    check (state in ('pending', 'delivered', 'failed', 'cancelled')),
    attempt_count   integer     not null default 0,
    next_attempt_at timestamptz,
    lease_token     uuid,
    last_status     integer,
    last_error      text,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    delivered_at    timestamptz,
    constraint deliveries_call_kind_key unique (call_id, kind),
    constraint deliveries_pending_has_due check (state <> 'pending' or next_attempt_at is not null)
);

-- "What is due next": only pending rows are in it, so its size follows the
-- backlog, never the delivered history.
create index deliveries_due_idx on deliveries (next_attempt_at) where state = 'pending';
-- The operator's list, newest first, by scenario and by state (ids are UUIDv7,
-- time-ordered, so id order is creation order).
create index deliveries_scenario_id_idx on deliveries (scenario_id, id desc);
create index deliveries_state_id_idx on deliveries (state, id desc);
