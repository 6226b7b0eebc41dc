//! End-to-end tests: the real server against a real Postgres (a fresh
//! database per test, made by `#[sqlx::test]`) and real receivers on 127.0.0.1.
//! One test binary keeps link time down.

mod abuse;
mod amplification;
mod browser;
mod console;
mod crash;
mod dispatch;
mod fairness;
mod health;
mod helpers;
mod ingest;
mod interleaving;
mod operator;
mod ordering;
mod process;
mod readme;
mod recordings;
mod rules;
mod scenarios;
mod screenshots;
mod security;
mod soak;
mod storage;
mod visits;
