//! The dispatcher's worker seats, which claims, hand-offs and probes share.
//!
//! A seat is two permits. A request slot: at most `concurrency` webhooks are
//! in flight at once; it is given back as soon as the request is done. And
//! a place among the deliveries sent but not yet recorded: at most
//! [`UNRECORDED_PER_SLOT`] × `concurrency` (what a crash can make us send
//! twice); it is given back once the result is committed. Results are
//! recorded in batches, each waiting for its commit's WAL flush; with the
//! two apart, the next requests go out while the last results wait for that
//! flush, instead of every worker waiting for it.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many deliveries may be sent and not yet recorded, per request slot.
/// `callhook-bench burst --batch` on 2 cores, 64 slots, medians of runs
/// alternated with 8: 1 (slots held until recorded, as before) about 7,600
/// deliveries/s, 2: 10,000, 4: 10,900, 8: 11,200 (`docs/performance.md`).
/// 4 keeps most of the gain and a crash's duplicates within 4 × the slots.
pub const UNRECORDED_PER_SLOT: usize = 4;

/// An endpoint's in-flight cap when neither it nor the operator sets one:
/// half of a dispatcher's places among the unrecorded, so a lone busy
/// endpoint fills the pipeline and a slow one, its rows waiting for their
/// host, leaves the other half to everyone else (docs/scheduling.md; above
/// half, the quiet scenario waited for a slow receiver's answers:
/// docs/performance.md). 128 at the default 64 seats
/// (`callhook_core::DEFAULT_ENDPOINT_MAX_IN_FLIGHT`).
pub fn default_endpoint_cap(concurrency: usize) -> i32 {
    let half = concurrency.max(1) * UNRECORDED_PER_SLOT / 2;
    i32::try_from(half).unwrap_or(i32::MAX).clamp(1, 1000)
}

/// The seats of one dispatcher.
#[derive(Clone, Debug)]
pub struct Seats {
    requests: Arc<Semaphore>,
    unrecorded: Arc<Semaphore>,
}

/// One worker's seat: see [`Seats`].
#[derive(Debug)]
pub struct Seat {
    request: OwnedSemaphorePermit,
    unrecorded: OwnedSemaphorePermit,
    requests: Arc<Semaphore>,
}

/// A seat whose request slot was given back while its delivery waits for
/// something else (its receiver host's turn): it keeps its place among the
/// unrecorded, so the wait costs no other delivery a request slot.
#[derive(Debug)]
pub struct Aside {
    unrecorded: OwnedSemaphorePermit,
    requests: Arc<Semaphore>,
}

impl Aside {
    /// A request slot again, waiting for one; itself back once the
    /// dispatcher has stopped.
    pub async fn back(self) -> Result<Seat, Aside> {
        match self.requests.clone().acquire_owned().await {
            Ok(request) => Ok(Seat {
                request,
                unrecorded: self.unrecorded,
                requests: self.requests,
            }),
            Err(_) => Err(self),
        }
    }

    /// Gives up the wait: the place among the unrecorded is kept until
    /// the result is written.
    pub fn sent(self) -> OwnedSemaphorePermit {
        self.unrecorded
    }
}

impl Seat {
    /// Gives the request slot back while the delivery waits.
    pub fn step_aside(self) -> Aside {
        drop(self.request);
        Aside {
            unrecorded: self.unrecorded,
            requests: self.requests,
        }
    }

    /// The request is done: its slot goes back; the place among the
    /// unrecorded is kept until the result is written.
    pub fn sent(self) -> OwnedSemaphorePermit {
        drop(self.request);
        self.unrecorded
    }
}

impl Seats {
    pub fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            requests: Arc::new(Semaphore::new(concurrency)),
            unrecorded: Arc::new(Semaphore::new(concurrency * UNRECORDED_PER_SLOT)),
        }
    }

    /// How many results may wait for the writer at most (its channel's size).
    pub fn unrecorded_capacity(concurrency: usize) -> usize {
        concurrency.max(1) * UNRECORDED_PER_SLOT
    }

    /// A seat, waiting for one; `None` once the dispatcher has stopped.
    /// (Always the place first, then the slot: one order, no deadlock.)
    pub async fn take(&self) -> Option<Seat> {
        let unrecorded = self.unrecorded.clone().acquire_owned().await.ok()?;
        let request = self.requests.clone().acquire_owned().await.ok()?;
        Some(Seat {
            request,
            unrecorded,
            requests: self.requests.clone(),
        })
    }

    /// A seat if one is free now.
    pub fn try_take(&self) -> Option<Seat> {
        let unrecorded = self.unrecorded.clone().try_acquire_owned().ok()?;
        let request = self.requests.clone().try_acquire_owned().ok()?;
        Some(Seat {
            request,
            unrecorded,
            requests: self.requests.clone(),
        })
    }

    /// Seats free now.
    pub fn available(&self) -> usize {
        self.requests
            .available_permits()
            .min(self.unrecorded.available_permits())
    }

    /// No more seats: the dispatcher is stopping.
    pub fn close(&self) {
        self.requests.close();
        self.unrecorded.close();
    }

    pub fn is_closed(&self) -> bool {
        self.requests.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_is_half_the_places_and_128_at_the_default_seats() {
        assert_eq!(
            default_endpoint_cap(64),
            callhook_core::DEFAULT_ENDPOINT_MAX_IN_FLIGHT
        );
        assert_eq!(default_endpoint_cap(16), 32);
        assert_eq!(default_endpoint_cap(1), 2);
        assert_eq!(default_endpoint_cap(10_000), 1000, "the flag's range");
    }

    #[tokio::test]
    async fn a_sent_request_frees_its_slot_but_not_its_place_among_the_unrecorded() {
        let seats = Seats::new(1);
        let seat = seats.try_take().expect("one seat");
        assert!(seats.try_take().is_none(), "one request in flight");
        let place = seat.sent();
        let mut waiting = Vec::new();
        for _ in 1..UNRECORDED_PER_SLOT {
            let next = seats.try_take().expect("the slot is free again");
            waiting.push(next.sent());
        }
        assert!(
            seats.try_take().is_none(),
            "no more than UNRECORDED_PER_SLOT sent and unrecorded"
        );
        drop(place);
        assert!(
            seats.try_take().is_some(),
            "a recorded result frees a place"
        );
        seats.close();
        assert!(seats.take().await.is_none());
    }
}
