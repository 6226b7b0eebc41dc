-- delivery_attempts, the largest table (append-only: one row per HTTP
-- attempt), becomes range-partitioned by day on started_at (UTC days), so
-- retention drops whole partitions instead of deleting rows: no bloat, no
-- vacuum debt. The service creates partitions ahead (CALLHOOK upkeep) and
-- drops those past CALLHOOK_RETENTION_DAYS. A default partition catches any
-- row outside them, so an attempt is never refused; retention deletes old
-- rows there in batches.
--
-- deliveries and calls stay unpartitioned: (call_id, kind) must stay unique
-- and pending rows must never go with a dropped partition, and a partition
-- key on time would make both depend on a row's age. They keep batched
-- deletes (docs/scaling.md says why and what would change that).
--
-- Existing rows are copied over with their ids; the unique key on
-- (delivery_id, attempt) becomes a plain index (a partitioned table's unique
-- keys must hold the partition key); completions number attempts under the
-- delivery's lease, so they stay unique by construction.

drop view delivery_log;

alter table delivery_attempts rename to delivery_attempts_unpartitioned;
alter table delivery_attempts_unpartitioned alter column id drop identity if exists;
-- Its indexes' names go to the new table's.
alter table delivery_attempts_unpartitioned
    drop constraint delivery_attempts_pkey,
    drop constraint delivery_attempts_delivery_attempt_key;
drop index delivery_attempts_started_at_idx;
drop index delivery_attempts_test_idx;

create sequence delivery_attempts_id_seq as bigint;
select setval('delivery_attempts_id_seq',
              coalesce((select max(id) from delivery_attempts_unpartitioned), 0) + 1, false);

create table delivery_attempts (
    id              bigint      not null default nextval('delivery_attempts_id_seq'),
    delivery_id     uuid        constraint delivery_attempts_delivery_id_fkey
                                references deliveries (id) on delete cascade,
    attempt         integer     not null,
    url             text        not null,
    started_at      timestamptz not null,
    duration_ms     integer     not null,
    response_status integer,
    -- the first 4 KiB, as UTF-8 text with invalid bytes and NULs replaced
    response_body   text,
    error           text,
    scenario_id     uuid        constraint delivery_attempts_scenario_id_fkey
                                references scenarios (id) on delete cascade,
    kind            text        constraint delivery_attempts_kind_check
                                check (kind in ('during_call', 'after_call')),
    is_test         boolean     not null default false,
    constraint delivery_attempts_test_or_delivery check (is_test or delivery_id is not null),
    primary key (id, started_at)
) partition by range (started_at);

alter sequence delivery_attempts_id_seq owned by delivery_attempts.id;

-- A delivery's attempts in order.
create index delivery_attempts_delivery_attempt_idx on delivery_attempts (delivery_id, attempt);
-- Time-based reads (the slowest receivers today; retention in the default partition).
create index delivery_attempts_started_at_idx on delivery_attempts (started_at);
-- Test sends of a scenario, newest last.
create index delivery_attempts_test_idx on delivery_attempts (scenario_id, started_at) where is_test;

create table delivery_attempts_default partition of delivery_attempts default;

-- A partition per UTC day from the oldest row to a week ahead.
do $$
declare
    d date;
begin
    for d in
        select g::date
          from generate_series(
                 coalesce((select min((started_at at time zone 'UTC')::date) from delivery_attempts_unpartitioned),
                          (now() at time zone 'UTC')::date),
                 (now() at time zone 'UTC')::date + 7,
                 interval '1 day') as g
    loop
        execute format(
            'create table %I partition of delivery_attempts for values from (%L) to (%L)',
            'delivery_attempts_' || to_char(d, 'YYYYMMDD'),
            (d::timestamp at time zone 'UTC'),
            ((d + 1)::timestamp at time zone 'UTC'));
    end loop;
end
$$;

insert into delivery_attempts (id, delivery_id, attempt, url, started_at, duration_ms, response_status,
                               response_body, error, scenario_id, kind, is_test)
select id, delivery_id, attempt, url, started_at, duration_ms, response_status,
       response_body, error, scenario_id, kind, is_test
  from delivery_attempts_unpartitioned;

drop table delivery_attempts_unpartitioned;

-- One row per attempt, for psql (as before). A join view, so Postgres
-- refuses writes through it: it is read-only.
create view delivery_log as
select a.id                                as attempt_id,
       a.delivery_id,
       d.call_id,
       coalesce(d.scenario_id, a.scenario_id) as scenario_id,
       s.name                              as scenario_name,
       coalesce(d.kind, a.kind)            as kind,
       a.url,
       a.attempt,
       a.response_status,
       a.error,
       a.started_at,
       a.duration_ms,
       a.is_test,
       d.state                             as delivery_state,
       a.response_body
  from delivery_attempts a
  left join deliveries d on d.id = a.delivery_id
  left join scenarios s on s.id = coalesce(d.scenario_id, a.scenario_id);

comment on view delivery_log is
    'One row per webhook attempt (test sends included, is_test): what was sent where, when and how it went. Read-only.';

-- deliveries is a queue: every row is updated a few times and then rests;
-- the default autovacuum waits for 20 % of the table to be dead, which on a
-- table of tens of millions of delivered rows lets the pending part bloat
-- for hours. Vacuum it after 1 % (or 1,000 rows) and analyse after 2 %, so
-- the due index and the planner's picture of the pending rows stay fresh;
-- a cost delay of 1 ms keeps vacuum from competing with claims.
alter table deliveries set (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 1
);
