-- Scenarios: what an operator configures. One during-call URL, one after-call
-- URL (null = that webhook is off), custom fields and the zone dates are
-- written in. Names are a contract (DESIGN.md): add columns, rename none.
create table scenarios (
    id              uuid primary key,
    name            text        not null check (length(name) between 1 and 255),
    during_call_url text,
    after_call_url  text,
    -- array of {"name", "value"}, in the order the operator gave them
    custom_fields   jsonb       not null default '[]' check (jsonb_typeof(custom_fields) = 'array'),
    timezone        text        not null default 'Europe/Moscow',
    signing_secret  text        not null,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);

-- Tracking numbers, digits only. The primary key makes a number belong to at
-- most one scenario; ingest finds a call's scenario by its callee here.
create table scenario_numbers (
    number      text primary key check (number ~ '^[0-9]{10,15}$'),
    scenario_id uuid not null references scenarios (id) on delete cascade
);

-- Listing a scenario's numbers.
create index scenario_numbers_scenario_id_idx on scenario_numbers (scenario_id);
