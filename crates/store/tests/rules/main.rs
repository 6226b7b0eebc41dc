//! The store's rules, one test each, against a fresh database per test
//! (`sqlx::test`; `DATABASE_URL` names the server's `postgres` database).
//! Where a rule is about transactions crossing, the test holds one open and
//! waits until Postgres reports the other waiting on it (`common::until_waiting`)
//! before letting it go: no timers.

mod common;

mod crossing;
mod fair;
mod health;
mod lease;
mod ordering;
mod pool;
mod probes;
mod repeats;
