-- no-transaction
-- The queue had two indexes of pending rows: `deliveries_endpoint_due_idx`
-- (an endpoint's deliveries by class and due time, for the claim) and
-- `deliveries_leased_idx` (an endpoint's leased ones, for its in-flight count).
-- A leased row was in both, so every hand-off insert and every claim wrote two
-- queue index entries. One index now holds every pending row once, keyed by
-- whether it is leased ahead of its class: its leased rows are one range (the
-- in-flight count), its unleased ones of a class another (the claim's walk).
-- One index entry fewer per delivery (docs/performance.md, "One queue index,
-- and BRIN for time"). Three migrations of one statement each, as in
-- 20261207000006_pending_out_of_list_indexes_1.sql. What counts in flight (the
-- claim, `lock_during_call_room`, `endpoint_health`) reads it unchanged: its
-- bare `lease_token is not null` is the index's third key.
create index concurrently if not exists deliveries_queue_idx on deliveries
    (delivery_endpoint(scenario_id), kind, (lease_token is not null),
     delivery_class(kind, attempt_count, requeued), next_attempt_at)
    where state = 'pending';
