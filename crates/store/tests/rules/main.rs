//! The store's rules, one test each, against a fresh database per test
//! (`sqlx::test`; `DATABASE_URL` names the server's `postgres` database).

mod common;

mod ordering;
mod repeats;
