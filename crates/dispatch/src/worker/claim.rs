//! The claim loop: due deliveries from the shared queue, as many as there
//! are free workers.

use std::sync::Arc;
use std::time::Duration;

use callhook_store::queue;
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{db_backoff, log_store_error, Crew, DispatchConfig};

pub(super) async fn claim_loop(
    pool: &PgPool,
    config: &DispatchConfig,
    crew: &Crew,
    slots: &Arc<Semaphore>,
    wake: &Notify,
    shutdown: &CancellationToken,
) {
    let mut backoff = db_backoff();
    loop {
        // Wait for at least one free worker.
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            () = shutdown.cancelled() => return,
        };
        // Take every free slot now: ingest's hand-off takes slots too.
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let free = permits.len();
        let claimed = tokio::select! {
            r = queue::claim(pool, free as i64, config.lease) => r,
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
                drop(permits);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        let full = claimed.len() == free;
        // A claim returns at most `free` rows; unused slots go back.
        for (row, permit) in claimed.into_iter().zip(permits) {
            crew.spawn(row, permit);
        }
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
