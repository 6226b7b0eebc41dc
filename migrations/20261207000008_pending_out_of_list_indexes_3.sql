-- no-transaction
-- See 20261207000006_pending_out_of_list_indexes_1.sql.
create index concurrently if not exists deliveries_scenario_state_id_unsent_idx
    on deliveries (scenario_id, state, id desc) where state in ('failed', 'cancelled');
