-- no-transaction
-- See 20261201000005_lean_state_indexes_1.sql.
create index concurrently if not exists deliveries_scenario_state_id_active_idx on deliveries (scenario_id, state, id desc) where state <> 'delivered';
