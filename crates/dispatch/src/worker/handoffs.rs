//! The door's receiving end: what claims and this process's ingest hand
//! over, seated in order.

use std::sync::Arc;
use std::time::Duration;

use callhook_store::queue;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{untrack, Crew};
use crate::handoff::{Handed, HandoffInbox};

/// Sends what comes through the door until shutdown, each once a worker
/// seat is free. A delivery that has waited `wait` since it was handed over goes back
/// to the queue for claims, with every other that waited as long (one
/// statement): a wait never eats into the lease the request needs, however
/// many wait. Returns the inbox, so what is left in it can be given back.
pub(super) async fn receive_handoffs(
    mut inbox: HandoffInbox,
    pool: PgPool,
    wait: Duration,
    crew: Crew,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> HandoffInbox {
    let mut next: Option<Handed> = None;
    loop {
        let handed = match next.take() {
            Some(h) => h,
            None => tokio::select! {
                r = inbox.rx.recv() => match r {
                    Some(h) => h,
                    None => return inbox,
                },
                () = shutdown.cancelled() => return inbox,
            },
        };
        // Tracked from now on, so a shutdown hands it back.
        crew.track(&handed.row);
        let deadline = handed.at + wait;
        let seat = tokio::select! {
            s = tokio::time::timeout_at(deadline, inbox.seats.take()) => s,
            () = shutdown.cancelled() => return inbox,
        };
        inbox.taken();
        if let Ok(Some(seat)) = seat {
            if handed.from_ingest {
                metrics::counter!("callhook_deliveries_handed_off_total").increment(1);
            }
            crew.spawn(handed.row, seat);
            continue;
        }
        // Every worker has been busy (slow receivers): let claims take it,
        // and whatever else has waited as long.
        let mut back = vec![handed.row];
        while let Ok(more) = inbox.rx.try_recv() {
            if more.at + wait > tokio::time::Instant::now() {
                next = Some(more);
                break;
            }
            inbox.taken();
            back.push(more.row);
        }
        metrics::counter!("callhook_handoffs_returned_total").increment(back.len() as u64);
        let (ids, tokens): (Vec<Uuid>, Vec<Uuid>) =
            back.iter().map(|r| (r.id, r.lease_token)).unzip();
        untrack(&crew.in_flight, &ids);
        if let Err(e) = queue::release(&pool, &ids, &tokens).await {
            tracing::warn!(error = %e, count = ids.len(), "could not hand back deliveries; they are sent when their lease runs out");
        }
        wake.notify_one();
    }
}
