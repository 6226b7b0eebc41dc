-- Scratch copies of calls and deliveries for the pgbench scripts beside this
-- file (run against the server's database; drop with teardown.sql):
--   psql "$DATABASE_URL" -f crates/bench/pgbench/setup.sql
--   pgbench -n -c 32 -j 2 -T 5 -f crates/bench/pgbench/ingest-notify.sql "$DATABASE_URL"
--   pgbench -n -c 32 -j 2 -T 5 -f crates/bench/pgbench/ingest-no-notify.sql "$DATABASE_URL"
--   psql "$DATABASE_URL" -f crates/bench/pgbench/teardown.sql
-- The pair shows what pg_notify costs the ingest transaction's commit rate.
create schema pgb;
create table pgb.calls (like public.calls including all);
create table pgb.deliveries (like public.deliveries including all,
    foreign key (call_id) references pgb.calls (id) on delete cascade);
