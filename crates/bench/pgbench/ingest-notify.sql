-- The ingest transaction's writes: one call, one delivery, pg_notify (see setup.sql).
begin;
insert into pgb.calls (id, caller, callee, started_at, start_hash) values ('c' || txid_current(), '79990000000', '78005552233', now(), 'p');
insert into pgb.deliveries (id, call_id, kind, payload, next_attempt_at) values (gen_random_uuid(), 'c' || txid_current(), 'during_call', repeat('x', 600), now());
select pg_notify('callhook_bench_probe', '');
commit;
