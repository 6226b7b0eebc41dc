//! The door's receiving end: what claims and this process's ingest hand
//! over, seated with the endpoints taking turns.

use std::sync::Arc;
use std::time::Duration;

use callhook_store::queue;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{untrack, Crew};
use crate::handoff::HandoffInbox;

/// Sends what comes through the door until shutdown, each once a worker
/// seat is free, to the endpoint sending the fewest (`handoff/turns.rs`). A
/// delivery that has waited `wait` since it was handed over goes back to the
/// queue for claims, with every other that waited as long (one statement): a
/// wait never eats into the lease the request needs, however many wait.
/// Returns the inbox, so what is left in it can be given back.
pub(super) async fn receive_handoffs(
    inbox: HandoffInbox,
    pool: PgPool,
    wait: Duration,
    crew: Crew,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> HandoffInbox {
    loop {
        let oldest = tokio::select! {
            at = inbox.arrival() => at,
            () = shutdown.cancelled() => return inbox,
        };
        let seat = tokio::select! {
            s = tokio::time::timeout_at(oldest + wait, inbox.seats.take()) => s,
            () = shutdown.cancelled() => return inbox,
        };
        if let Ok(seat) = seat {
            // Seats closed: the dispatcher is stopping, and gives back
            // what is left behind the door.
            let Some(seat) = seat else {
                return inbox;
            };
            // The seat goes to whichever endpoint's turn it is (the fewest
            // sending).
            let Some((handed, sending)) = inbox.try_take() else {
                continue;
            };
            inbox.taken();
            crew.track(&handed.row);
            if handed.from_ingest {
                metrics::counter!("callhook_deliveries_handed_off_total").increment(1);
            }
            crew.spawn(handed.row, seat, Some(sending));
            continue;
        }
        // Every worker has been busy (slow receivers): let claims take what
        // has waited its time.
        let back = inbox.handed_by(tokio::time::Instant::now() - wait);
        if back.is_empty() {
            continue;
        }
        for _ in &back {
            inbox.taken();
        }
        metrics::counter!("callhook_handoffs_returned_total").increment(back.len() as u64);
        let (ids, tokens): (Vec<Uuid>, Vec<Uuid>) =
            back.iter().map(|h| (h.row.id, h.row.lease_token)).unzip();
        untrack(&crew.in_flight, &ids);
        if let Err(e) = queue::release(&pool, &ids, &tokens).await {
            tracing::warn!(error = %e, count = ids.len(), "could not hand back deliveries; they are sent when their lease runs out");
        }
        wake.notify_one();
    }
}
