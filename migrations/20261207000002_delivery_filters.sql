-- Delivery rules (conditions) per webhook.
--
-- A scenario's during-call and after-call webhooks each have a list of
-- conditions on the call (`[{"field", "op", "value"}]`, checked by the API;
-- empty: every call, as before). A webhook whose conditions do not hold is
-- stored `cancelled` with `last_error` = 'filtered', and `filtered_by` keeps
-- the condition that failed, as it was then.
alter table scenarios
    add column during_call_filter jsonb not null default '[]',
    add column after_call_filter  jsonb not null default '[]';

alter table deliveries
    add column filtered_by jsonb;

-- `first_call` ("no earlier call from this caller reached this scenario")
-- is one index probe, made only for scenarios whose conditions name it.
create index calls_scenario_caller_idx on calls (scenario_id, caller, started_at);
