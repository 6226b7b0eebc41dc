-- Number pools: each website visit is shown a tracking number of its
-- scenario's pool, reserved for it; a call to that number while reserved
-- belongs to that visit (docs/attribution.md).

-- Static numbers (offline ads) are never reserved; calls to them carry their
-- fixed marker and source levels. `released_at` is when the number's latest
-- reservation ends (or ended): the number is free once it is in the past, and
-- free numbers are handed out least recently released first.
alter table scenario_numbers
    add column is_static      boolean     not null default false,
    add column marker         text,
    add column source_level_1 text,
    add column source_level_2 text,
    add column released_at    timestamptz not null default '-infinity';

-- "The pool's free numbers, least recently released first": an index range
-- scan that stops at the first row nobody else has locked (SKIP LOCKED).
create index scenario_numbers_pool_idx on scenario_numbers (scenario_id, released_at, number)
    where not is_static;

-- Reservation history: kept, so a call is attributed by the time of the call,
-- not by the time its event arrives. A reservation covers the whole seconds
-- from `reserved_from` (truncated to the second) to `reserved_until`.
create table number_reservations (
    id             uuid primary key,
    -- no foreign key to scenario_numbers: history outlives a number's removal
    number         text        not null,
    scenario_id    uuid        not null references scenarios (id) on delete cascade,
    visit_id       text        not null,
    -- the visit's fields ({"visit_id", "marker", "utm_source", …}, nulls left out)
    visit          jsonb       not null check (jsonb_typeof(visit) = 'object'),
    reserved_from  timestamptz not null,
    reserved_until timestamptz not null check (reserved_until >= reserved_from),
    -- handed out while another visit held it (the pool was exhausted)
    shared         boolean     not null default false,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);

-- "The reservation covering number N at time T" (the latest started wins;
-- within one second, the one made last): a backward scan of N's history from T.
create index number_reservations_number_idx
    on number_reservations (number, reserved_from desc, created_at desc) include (reserved_until, scenario_id);

-- A visit's heartbeat finds its live reservation.
create index number_reservations_visit_idx
    on number_reservations (scenario_id, visit_id, reserved_until desc);

-- Pool stats: shared reservations of a scenario today.
create index number_reservations_shared_idx
    on number_reservations (scenario_id, reserved_from) where shared;
