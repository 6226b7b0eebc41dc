//! The writer: records workers' results in batches.

use std::sync::Arc;
use std::time::Duration;

use callhook_store::health::HealthSettings;
use callhook_store::queue::{self, Completion};
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};

use super::{db_backoff, log_store_error, untrack, Done, InFlight};

/// Records results in batches: whatever has arrived since the last write
/// goes in one statement. A write that fails is retried with backoff; past
/// the lease the deliveries would be sent again anyway, so it gives up then.
pub(super) async fn write_completions(
    pool: PgPool,
    mut rx: mpsc::Receiver<Done>,
    in_flight: InFlight,
    wake: Arc<Notify>,
    health: HealthSettings,
) {
    const MAX_BATCH: usize = 512;
    let mut received = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut received, MAX_BATCH).await > 0 {
        let (batch, slots): (Vec<Completion>, Vec<_>) =
            received.drain(..).map(|d| (d.completion, d.slot)).unzip();
        let mut backoff = db_backoff();
        let mut tries = 0;
        // Whether claims should look again (deliveries were made due, or we
        // cannot tell).
        let mut woken = true;
        loop {
            match queue::complete(&pool, &batch, &health).await {
                Ok(done) => {
                    woken = done.woken > 0;
                    if (done.updated as usize) < batch.len() {
                        tracing::warn!(
                            lost = batch.len() - done.updated as usize,
                            "some deliveries' leases had expired and were taken over; their results were not recorded"
                        );
                    }
                    for changed in &done.transitions {
                        crate::transitions::report(changed);
                    }
                    break;
                }
                Err(e) => {
                    tries += 1;
                    let pause = backoff.next().unwrap_or(Duration::from_secs(5));
                    if tries > 12 {
                        tracing::error!(error = %e, count = batch.len(), "giving up recording results; these deliveries will be sent again when their leases expire");
                        break;
                    }
                    log_store_error(&e, "recording results", pause);
                    tokio::time::sleep(pause).await;
                }
            }
        }
        untrack(&in_flight, batch.iter().map(|c| &c.id));
        drop(slots); // frees their places among the unrecorded
        if woken {
            wake.notify_one();
        }
    }
}
