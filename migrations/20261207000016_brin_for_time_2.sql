-- no-transaction
-- See 20261207000015_brin_for_time_1.sql.
drop index concurrently if exists calls_created_at_idx;
