//! The door into this process's dispatcher's workers.
//!
//! Every leased delivery but a probe comes in through it: the claim loop's
//! and, when the API and the dispatcher share a process, ingest's. Ingest
//! inserts a new delivery already leased and, once its transaction has
//! committed, passes the row over here in memory, so it is sent without a
//! claim, a `NOTIFY` or a poll. Behind the door each row waits its turn for
//! a worker seat ([`Seats`]), for a bounded time. A free seat goes to the
//! endpoint this door is sending the fewest webhooks to, among equals the
//! next in the round, each endpoint's rows in arrival order (`turns.rs`):
//! a flood's hundreds of claimed rows, or a slow receiver's long requests,
//! do not hold a quiet endpoint's one back. This module owns that door.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use callhook_store::calls::LeasePlan;
use callhook_store::queue::{self, Claimed};
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use crate::seats::Seats;
use turns::Behind;
pub use turns::Sending;

mod turns;

/// Hands deliveries from ingest straight to this process's dispatcher.
///
/// When the API and the dispatcher share a process, ingest inserts a new
/// delivery already leased (the lease a claim would stamp) while the
/// dispatcher has free workers, and once the ingest commits passes the row
/// over in memory: it is sent without a claim, a `NOTIFY` or a poll, one
/// write fewer per delivery. The rest are inserted due now, for claims.
///
/// A handed-off row waits for a worker seat like a claimed one (see
/// [`Seats`] for what that bounds); up to `concurrency` more may wait for a
/// seat in memory (not yet sent, so a crash only delays them by the lease),
/// and one that waits too long goes back to the queue. Should the process die, a handed-off row becomes due when its
/// lease runs out, like a claimed one.
#[derive(Clone, Debug)]
pub struct Handoff {
    seats: Seats,
    behind: Arc<Behind>,
    lease: Duration,
    endpoint_cap: i32,
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
    pub at: Instant,
    /// From ingest (not a claim).
    pub from_ingest: bool,
}

/// The dispatcher's side of a [`Handoff`]: its worker seats (which claims
/// take too) and the deliveries handed to it.
#[derive(Debug)]
pub struct HandoffInbox {
    pub seats: Seats,
    behind: Arc<Behind>,
    waiting: Arc<AtomicUsize>,
}

impl HandoffInbox {
    /// A handed-off row has a slot now, or went back to the queue.
    pub fn taken(&self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }

    /// The next row to seat, whose turn it is (`turns.rs`), counted among
    /// what its endpoint is sending until its worker drops the [`Sending`];
    /// `None` when none waits.
    pub fn try_take(&self) -> Option<(Handed, Sending)> {
        self.behind.take()
    }

    /// Waits until a row is waiting; when the longest-waiting one came in.
    pub async fn arrival(&self) -> Instant {
        loop {
            let notified = self.behind.arrived.notified();
            if let Some(at) = self.behind.lock().oldest() {
                return at;
            }
            notified.await;
        }
    }

    /// Every row handed over at or before `at`.
    pub fn handed_by(&self, at: Instant) -> Vec<Handed> {
        self.behind.lock().handed_by(at)
    }

    /// Closes the door: rows passed from now on go back to the queue.
    /// What still waits behind it is the answer.
    pub fn close(&self) -> Vec<Handed> {
        let mut q = self.behind.lock();
        q.closed = true;
        let mut left = Vec::new();
        while let Some(h) = q.pop() {
            left.push(h);
        }
        left
    }
}

impl Drop for HandoffInbox {
    fn drop(&mut self) {
        self.behind.lock().closed = true;
    }
}

/// A hand-off to a dispatcher of `concurrency` workers leasing for `lease`,
/// whose endpoints take at most `endpoint_cap` in flight unless their
/// scenario says otherwise.
pub fn handoff(concurrency: usize, lease: Duration, endpoint_cap: i32) -> (Handoff, HandoffInbox) {
    let seats = Seats::new(concurrency);
    let behind = Arc::new(Behind::default());
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        Handoff {
            seats: seats.clone(),
            behind: behind.clone(),
            lease,
            endpoint_cap,
            waiting: waiting.clone(),
            room: concurrency,
        },
        HandoffInbox {
            seats,
            behind,
            waiting,
        },
    )
}

impl Handoff {
    /// How many deliveries may come through the door now: the free seats
    /// and the room left to wait for one (none once the dispatcher has
    /// stopped; it closes its seats).
    pub fn budget(&self) -> usize {
        if self.seats.is_closed() {
            0
        } else {
            (self.seats.available() + self.room)
                .saturating_sub(self.waiting.load(Ordering::Acquire))
        }
    }

    /// What ingest may lease for this dispatcher now.
    pub fn plan(&self) -> LeasePlan {
        LeasePlan {
            budget: self.budget(),
            lease: self.lease,
            endpoint_cap: self.endpoint_cap,
        }
    }

    /// Passes committed, leased deliveries from ingest to the dispatcher.
    /// Any it can no longer take (it stopped meanwhile) go back to the
    /// queue, due now.
    pub async fn deliver(&self, pool: &PgPool, handed: Vec<Claimed>) {
        self.pass(pool, handed, true).await;
    }

    /// Passes claimed deliveries to the workers, as [`Handoff::deliver`].
    pub(crate) async fn pass_claimed(&self, pool: &PgPool, claimed: Vec<Claimed>) {
        self.pass(pool, claimed, false).await;
    }

    /// Waits until a seat is free (then the budget is not zero, unless the
    /// room is full of waiting rows).
    pub(crate) async fn seat_freed(&self) {
        drop(self.seats.take().await);
    }

    async fn pass(&self, pool: &PgPool, handed: Vec<Claimed>, from_ingest: bool) {
        let at = Instant::now();
        let back = {
            let mut q = self.behind.lock();
            if q.closed {
                handed
            } else {
                self.waiting.fetch_add(handed.len(), Ordering::AcqRel);
                for row in handed {
                    q.push(Handed {
                        row,
                        at,
                        from_ingest,
                    });
                }
                Vec::new()
            }
        };
        if back.is_empty() {
            self.behind.arrived.notify_one();
            return;
        }
        let ids: Vec<Uuid> = back.iter().map(|r| r.id).collect();
        let tokens: Vec<Uuid> = back.iter().map(|r| r.lease_token).collect();
        if let Err(e) = queue::release(pool, &ids, &tokens).await {
            tracing::warn!(error = %e, count = ids.len(), "could not hand back deliveries; they are sent when their lease runs out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::turns::tests::{any_row, handed};
    use super::*;

    #[tokio::test]
    async fn a_closed_door_gives_rows_back_and_takes_no_more() {
        let (door, inbox) = handoff(2, Duration::from_secs(5), 16);
        door.behind.lock().push(handed(any_row(), Instant::now()));
        assert_eq!(inbox.close().len(), 1);
        assert!(door.behind.lock().closed);
        assert!(inbox.try_take().is_none());
    }
}
