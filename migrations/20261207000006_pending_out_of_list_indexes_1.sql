-- no-transaction
-- The claim's lookups (an endpoint's due deliveries of one class, oldest
-- first) have their own index, `deliveries_endpoint_due_idx`. But the list
-- indexes keyed by state held pending rows too, and when the statistics were
-- taken while almost nothing was pending (a platform's usual day), a flood
-- or a bulk recover of thousands of pending rows made the planner prefer
-- "every pending row by (state, id), then filter and sort": a claim took
-- 90 ms instead of 2 (the recover went at 115/s). The list indexes now hold
-- only the states an operator lists to act on, `failed` and `cancelled`; a
-- list of pending rows reads `deliveries_endpoint_due_idx` (it holds every
-- pending row with a due time) or the scenario's index. Two index entries
-- fewer for every insert and every claim, too. Four migrations of one
-- statement each, as in 20261201000005_lean_state_indexes_1.sql.
create index concurrently if not exists deliveries_state_id_unsent_idx on deliveries (state, id desc)
    where state in ('failed', 'cancelled');
