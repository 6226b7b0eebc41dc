-- A delivery's row is written twice: inserted, then completed (and a claimed
-- one is leased in between). The completion changes indexed columns (state,
-- the lease), so it is never a HOT update, but when the new version fits on
-- the row's own page, Postgres logs only the bytes that changed, not the
-- whole row with its body. Pages filled to half by inserts leave that room:
-- WAL per delivery −15 % in `burst`, −24 % in `burst --batch`, the heap no
-- larger after those runs (its old versions are pruned in place), delivered
-- rate unchanged (docs/performance.md, "Half-full pages for deliveries").
-- New pages only: the rows already stored keep their pages.
alter table deliveries set (fillfactor = 50);
