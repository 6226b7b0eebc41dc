//! Retention: a background task that deletes old history in small batches,
//! so it never holds locks long enough to slow delivery. Pending and failed
//! deliveries are kept whatever their age.

use std::time::Duration;

use callhook_store::log;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Rows per delete statement (rows walked, for deliveries).
const BATCH: i64 = 1000;
/// Pause between two full batches, so other work gets the database.
const PAUSE: Duration = Duration::from_millis(200);
/// How often a pass runs.
const EVERY: Duration = Duration::from_secs(600);

/// Every [`EVERY`], deletes attempts started more than `days` days ago, then
/// delivered and cancelled deliveries created before then (with their
/// attempts), then calls created before then that have no deliveries left.
/// `days == 0` keeps everything. Stops when `shutdown` is cancelled.
pub async fn run(pool: PgPool, days: u32, shutdown: CancellationToken) {
    if days == 0 {
        tracing::info!("retention disabled (CALLHOOK_RETENTION_DAYS=0)");
        return;
    }
    loop {
        let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
        match pass(&pool, cutoff, &shutdown).await {
            Ok(Some((a, d, c))) if a + d + c > 0 => {
                tracing::info!(attempts = a, deliveries = d, calls = c, %cutoff, "retention deleted old history")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed; trying again later"),
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One pass; `None` when stopped by shutdown.
async fn pass(
    pool: &PgPool,
    cutoff: chrono::DateTime<chrono::Utc>,
    shutdown: &CancellationToken,
) -> Result<Option<(u64, u64, u64)>, callhook_store::StoreError> {
    let pause = || async {
        tokio::select! {
            () = tokio::time::sleep(PAUSE) => true,
            () = shutdown.cancelled() => false,
        }
    };
    let mut attempts = 0;
    loop {
        let n = log::purge_attempts(pool, cutoff, BATCH).await?;
        attempts += n;
        if n < BATCH as u64 {
            break;
        }
        if !pause().await {
            return Ok(None);
        }
    }
    let (mut deliveries, mut after) = (0, None);
    loop {
        let (n, last) = log::purge_deliveries(pool, cutoff, after, BATCH).await?;
        deliveries += n;
        match last {
            Some(id) => after = Some(id),
            None => break,
        }
        // Walking kept (pending, failed) rows costs little; pause after deletes.
        if n > 0 && !pause().await {
            return Ok(None);
        }
    }
    let mut calls = 0;
    loop {
        let n = log::purge_calls(pool, cutoff, BATCH).await?;
        calls += n;
        if n < BATCH as u64 {
            break;
        }
        if !pause().await {
            return Ok(None);
        }
    }
    Ok(Some((attempts, deliveries, calls)))
}
