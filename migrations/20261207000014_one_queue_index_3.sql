-- no-transaction
-- See 20261207000012_one_queue_index_1.sql.
drop index concurrently if exists deliveries_leased_idx;
