//! Upkeep: retention (deleting old history in small batches, so it never
//! holds locks long enough to slow delivery; pending and failed deliveries
//! are kept whatever their age), run by one process per database at a time.
//!
//! Every process competes for a session advisory lock on a connection of
//! its own; the holder is the leader and runs upkeep. A leader that dies
//! loses its session and so the lock, and another process takes it at its
//! next try, within [`TRY_EVERY`].

use std::time::Duration;

use callhook_store::{log, upkeep};
use sqlx::{ConnectOptions as _, PgPool};
use tokio_util::sync::CancellationToken;

/// How often a process tries to become the leader (and the leader checks
/// its session is alive).
pub const TRY_EVERY: Duration = Duration::from_secs(15);

/// Competes for the upkeep lock until `shutdown`; while leading, runs a
/// retention pass at once and then every [`EVERY`]. `callhook_upkeep_leader`
/// says whether this process leads.
pub async fn run(pool: PgPool, days: u32, shutdown: CancellationToken) {
    metrics::gauge!("callhook_upkeep_leader").set(0.0);
    let mut leading = false;
    let mut last_pass: Option<tokio::time::Instant> = None;
    let mut session: Option<sqlx::PgConnection> = None;
    loop {
        if session.is_none() {
            match pool.connect_options().connect().await {
                Ok(c) => session = Some(c),
                Err(e) => tracing::debug!(error = %e, "upkeep: no session for the leader lock yet"),
            }
        }
        let now_leading = match session.as_mut() {
            Some(conn) => match upkeep::try_lead(conn).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "upkeep: lost the leader session; reconnecting");
                    session = None;
                    false
                }
            },
            None => false,
        };
        if now_leading != leading {
            leading = now_leading;
            metrics::gauge!("callhook_upkeep_leader").set(if leading { 1.0 } else { 0.0 });
            if leading {
                tracing::info!("this process now runs upkeep (retention) for the database");
                last_pass = None;
            } else {
                tracing::info!("this process no longer runs upkeep");
            }
        }
        if leading && last_pass.is_none_or(|t| t.elapsed() >= EVERY) {
            last_pass = Some(tokio::time::Instant::now());
            partitions(&pool).await;
            retention(&pool, days, &shutdown).await;
        }
        // Without a session (the database was not reachable, or had no
        // connection to spare) try again soon: the leader may be dead.
        let next_try = if session.is_some() {
            TRY_EVERY
        } else {
            RECONNECT_EVERY
        };
        tokio::select! {
            () = tokio::time::sleep(next_try) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// How soon a process without a session for the leader lock tries again.
const RECONNECT_EVERY: Duration = Duration::from_secs(2);

/// Rows per delete statement (rows walked, for deliveries).
const BATCH: i64 = 1000;
/// Pause between two full batches, so other work gets the database.
const PAUSE: Duration = Duration::from_millis(200);
/// How often a pass runs.
const EVERY: Duration = Duration::from_secs(600);

/// Days of attempt partitions kept ready ahead of today.
const PARTITIONS_AHEAD: u32 = 7;

/// Creates `delivery_attempts`' day partitions from today to a week ahead.
async fn partitions(pool: &PgPool) {
    let today = chrono::Utc::now().date_naive();
    match upkeep::create_attempt_partitions(pool, today, PARTITIONS_AHEAD + 1).await {
        Ok(created) if !created.is_empty() => {
            tracing::info!(days = ?created, "created attempts partitions ahead")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not create attempts partitions; trying again later")
        }
    }
}

/// Drops the day partitions of attempts older than `days` days, then
/// deletes (in batches) the older attempts left elsewhere (the default
/// partition, the cutoff day's first hours), delivered and cancelled
/// deliveries created before the cutoff (with their attempts), then calls
/// created before it that have no deliveries left. `days == 0` keeps
/// everything.
pub async fn retention(pool: &PgPool, days: u32, shutdown: &CancellationToken) {
    if days == 0 {
        return;
    }
    let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    match upkeep::drop_attempt_partitions_before(pool, cutoff.date_naive()).await {
        Ok(dropped) if !dropped.is_empty() => {
            tracing::info!(days = ?dropped, "retention dropped attempts partitions")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not drop old attempts partitions"),
    }
    match pass(pool, cutoff, shutdown).await {
        Ok(Some((a, d, c))) if a + d + c > 0 => {
            tracing::info!(attempts = a, deliveries = d, calls = c, %cutoff, "retention deleted old history")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "retention pass failed; trying again later"),
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
