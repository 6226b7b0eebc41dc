-- no-transaction
-- See 20261207000018_ascending_lists_1.sql.
create index concurrently if not exists calls_scenario_started_asc_idx on calls (scenario_id, started_at);
