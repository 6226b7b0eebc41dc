-- no-transaction
-- See 20261207000006_pending_out_of_list_indexes_1.sql.
drop index concurrently if exists deliveries_state_id_active_idx;
