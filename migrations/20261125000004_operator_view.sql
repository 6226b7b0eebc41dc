-- The operator's view: test sends recorded as attempts, indexes for the
-- delivery list's filters and for retention, and the read-only `delivery_log`
-- view for psql.

-- A test send (POST /api/v1/scenarios/{id}/test) is an attempt without a
-- delivery: it names its scenario and kind itself and is marked `is_test`.
-- Every other attempt still belongs to a delivery.
alter table delivery_attempts alter column delivery_id drop not null;
alter table delivery_attempts
    add column scenario_id uuid references scenarios (id) on delete cascade,
    add column kind        text check (kind in ('during_call', 'after_call')),
    add column is_test     boolean not null default false,
    add constraint delivery_attempts_test_or_delivery
        check (is_test or delivery_id is not null);

-- "Everything that failed for this scenario": the scenario's rows of one
-- state without walking its whole history. (A filter on kind alone needs no
-- index of its own: half the rows match, so walking the primary key newest
-- first finds a page at once; retention walks the primary key too, since
-- ids are time-ordered. Every index here costs each claim and completion.)
create index deliveries_scenario_state_id_idx on deliveries (scenario_id, state, id desc);
-- Retention finds old calls.
create index calls_created_at_idx on calls (created_at);
-- A delivery's attempts in order come from the (delivery_id, attempt) key;
-- test sends of a scenario, newest last.
create index delivery_attempts_test_idx on delivery_attempts (scenario_id, started_at)
    where is_test;

-- One row per attempt, for psql. A join view, so Postgres refuses writes
-- through it: it is read-only.
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
