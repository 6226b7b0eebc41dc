-- See 20261207000015_brin_for_time_1.sql. A partitioned table's index cannot
-- be built concurrently; a BRIN build reads each partition once and writes a
-- few pages, so the lock it takes is short even on a large history.
create index if not exists delivery_attempts_started_at_brin on delivery_attempts using brin (started_at);
drop index if exists delivery_attempts_started_at_idx;
