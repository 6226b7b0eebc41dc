-- Who changed what: one row per admin change (scenario create, save,
-- delete; secret rotation; retries; endpoint pause and enable; test sends),
-- with the name of the token used. `details` holds what changed (URLs
-- before and after, counts), never a secret. No foreign key: the trail
-- outlives the scenario.
create table audit_log (
    id          bigint generated always as identity primary key,
    at          timestamptz not null default now(),
    action      text        not null,
    scenario_id uuid,
    actor       text        not null,
    details     jsonb       not null default '{}'
);

-- "What happened to this scenario", newest first; and the whole trail by id.
create index audit_log_scenario_idx on audit_log (scenario_id, id desc);
