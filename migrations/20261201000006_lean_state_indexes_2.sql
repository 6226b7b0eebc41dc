-- no-transaction
-- See 20261201000005_lean_state_indexes_1.sql.
drop index concurrently if exists deliveries_state_id_idx;
