-- no-transaction
-- See 20261207000018_ascending_lists_1.sql.
drop index concurrently if exists calls_scenario_started_idx;
