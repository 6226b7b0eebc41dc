//! Every SQL statement of callhook, the migrations ([`MIGRATOR`]) and the
//! delivery queue (claim, complete, reschedule).
//!
//! Functions take an executor or a `&mut PgConnection` so the caller owns the
//! transaction's scope; flows that must be atomic (ingesting a call with its
//! deliveries) open their own transaction here. SQL only: no HTTP, no tasks,
//! no semaphores, no metrics. What a transaction leaves to do once committed
//! (hand deliveries to a dispatcher, wake dispatchers, count) it returns to
//! the caller (`callhook-ingest`, `callhook-dispatch`).

pub mod audit;
pub mod calls;
pub mod error;
pub mod health;
pub mod log;
pub mod pool;
pub mod queue;
pub mod scenarios;
pub mod sessions;
pub mod upkeep;

pub use error::StoreError;

/// The schema's migrations, embedded at build time from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// The channel a committed new delivery is announced on, so dispatchers wake
/// at once instead of at their next poll.
pub const NOTIFY_CHANNEL: &str = "callhook_deliveries";

/// Applies pending migrations. Safe to run from several processes at once:
/// sqlx serialises them with an advisory lock.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Checks the database answers (for `/readyz`).
pub async fn ping(pool: &sqlx::PgPool) -> Result<(), StoreError> {
    sqlx::query_scalar!("select 1 as \"one!\"")
        .fetch_one(pool)
        .await?;
    Ok(())
}
