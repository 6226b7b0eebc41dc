//! The claim loop: due deliveries from the shared queue, as many as the
//! door has room for (free seats, and as many again to wait for one),
//! passed through the door like ingest's hand-offs.

use std::time::Duration;

use callhook_store::queue::{self, ClaimLimits};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{db_backoff, log_store_error, DispatchConfig};
use crate::handoff::Handoff;

pub(super) async fn claim_loop(
    pool: &PgPool,
    config: &DispatchConfig,
    door: &Handoff,
    wake: &Notify,
    shutdown: &CancellationToken,
) {
    let mut backoff = db_backoff();
    loop {
        // Claim for the room behind the door: one claim of many rows, the
        // next while these are being sent.
        // When busy, wait for some room rather than claim a row at a time.
        let room = door.budget();
        if room < (config.concurrency / 8).max(1) {
            tokio::select! {
                () = door.seat_freed() => continue,
                () = shutdown.cancelled() => return,
            }
        }
        let claimed = tokio::select! {
            r = queue::claim(pool, ClaimLimits {
                limit: room as i64,
                lease: config.lease,
                endpoint_cap: config.endpoint_cap,
            }) => r,
            () = shutdown.cancelled() => return,
        };
        let claimed = match claimed {
            Ok(rows) => {
                backoff = db_backoff();
                rows
            }
            Err(e) => {
                let pause = backoff.next().unwrap_or(Duration::from_secs(5));
                log_store_error(&e, "claiming deliveries", pause);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        let full = claimed.len() == room;
        door.pass_claimed(pool, claimed).await;
        if full {
            continue;
        }
        // Nothing more is due: sleep until woken, the next due time, or the poll.
        let sleep = match queue::next_due_in(pool).await {
            Ok(Some(d)) => d.min(config.poll_interval),
            _ => config.poll_interval,
        };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(sleep) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
