//! The door from ingest into this process's dispatcher.
//!
//! When the API and the dispatcher share a process, ingest inserts a new
//! delivery already leased and, once its transaction has committed, passes
//! the row over here in memory, so it is sent without a claim, a `NOTIFY` or
//! a poll. This module owns that door and the dispatcher's worker slots,
//! which claims and hand-offs share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use callhook_store::calls::LeasePlan;
use callhook_store::queue::{self, Claimed};
use sqlx::PgPool;
use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

/// Hands deliveries from ingest straight to this process's dispatcher.
///
/// When the API and the dispatcher share a process, ingest inserts a new
/// delivery already leased (the lease a claim would stamp) while the
/// dispatcher has free workers, and once the ingest commits passes the row
/// over in memory: it is sent without a claim, a `NOTIFY` or a poll, one
/// write fewer per delivery. The rest are inserted due now, for claims.
///
/// A handed-off row waits for a worker slot like a claimed one, so at most
/// `concurrency` deliveries are ever being sent and unrecorded; up to as
/// many again may wait for a slot in memory (not yet sent, so a crash only
/// delays them by the lease), and one that waits too long goes back to the
/// queue. Should the process die, a handed-off row becomes due when its
/// lease runs out, like a claimed one.
#[derive(Clone, Debug)]
pub struct Handoff {
    slots: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Handed>,
    lease: Duration,
    /// Rows handed over and still waiting for a slot.
    waiting: Arc<AtomicUsize>,
    /// How many may wait.
    room: usize,
}

/// A delivery handed over, and when: it may wait for a worker only so long
/// from then, whatever waits before it.
#[derive(Debug)]
pub struct Handed {
    pub row: Claimed,
    pub at: tokio::time::Instant,
}

/// The dispatcher's side of a [`Handoff`]: its worker slots (which claims
/// take too) and the deliveries handed to it.
#[derive(Debug)]
pub struct HandoffInbox {
    pub slots: Arc<Semaphore>,
    pub rx: mpsc::UnboundedReceiver<Handed>,
    waiting: Arc<AtomicUsize>,
}

impl HandoffInbox {
    /// A handed-off row has a slot now, or went back to the queue.
    pub fn taken(&self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A hand-off to a dispatcher of `concurrency` workers leasing for `lease`.
pub fn handoff(concurrency: usize, lease: Duration) -> (Handoff, HandoffInbox) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let (tx, rx) = mpsc::unbounded_channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        Handoff {
            slots: slots.clone(),
            tx,
            lease,
            waiting: waiting.clone(),
            room: concurrency,
        },
        HandoffInbox { slots, rx, waiting },
    )
}

impl Handoff {
    /// How many new deliveries to hand off now: the free workers and the
    /// room left to wait for one (none once the dispatcher has stopped; it
    /// closes its slots).
    fn budget(&self) -> usize {
        if self.slots.is_closed() {
            0
        } else {
            (self.slots.available_permits() + self.room)
                .saturating_sub(self.waiting.load(Ordering::Acquire))
        }
    }

    /// What ingest may lease for this dispatcher now.
    pub fn plan(&self) -> LeasePlan {
        LeasePlan {
            budget: self.budget(),
            lease: self.lease,
        }
    }

    /// Passes committed, leased deliveries to the dispatcher. Any it can no
    /// longer take (it stopped meanwhile) go back to the queue, due now.
    pub async fn deliver(&self, pool: &PgPool, handed: Vec<Claimed>) {
        let mut back = Vec::new();
        let at = tokio::time::Instant::now();
        for row in handed {
            self.waiting.fetch_add(1, Ordering::AcqRel);
            if let Err(mpsc::error::SendError(h)) = self.tx.send(Handed { row, at }) {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                back.push(h.row);
            }
        }
        if back.is_empty() {
            return;
        }
        let ids: Vec<Uuid> = back.iter().map(|r| r.id).collect();
        let tokens: Vec<Uuid> = back.iter().map(|r| r.lease_token).collect();
        if let Err(e) = queue::release(pool, &ids, &tokens).await {
            tracing::warn!(error = %e, count = ids.len(), "could not hand back deliveries; they are sent when their lease runs out");
        }
    }
}
