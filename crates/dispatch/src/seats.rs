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
//!
//! A delivery waiting for its receiver host's turn (a slow receiver at its
//! per-host limit) has not been sent: it holds neither, only a place in the
//! waiting room (as many as there are places among the unrecorded). So a
//! slow receiver's queued rows cannot fill the places every other endpoint's
//! webhooks need. With the waiting room full, [`Seat::step_aside`] refuses,
//! and the worker sends the delivery back to the queue rather than wait in
//! a place (`worker/send.rs`).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many deliveries may be sent and not yet recorded, per request slot.
/// `callhook-bench burst --batch` on 2 cores, 64 slots, medians of runs
/// alternated with 8: 1 (slots held until recorded, as before) about 7,600
/// deliveries/s, 2: 10,000, 4: 10,900, 8: 11,200 (`docs/performance.md`).
/// 4 keeps most of the gain and a crash's duplicates within 4 × the slots.
pub const UNRECORDED_PER_SLOT: usize = 4;

/// An endpoint's in-flight cap when neither it nor the operator sets one:
/// a dispatcher's places among the unrecorded, so a lone busy endpoint fills
/// the pipeline, while a slow one's rows, waiting for their host, sit in the
/// waiting room (as large) and hold no place (docs/scheduling.md; with no
/// waiting room, above half the places the quiet scenario waited for a slow
/// receiver's answers: docs/performance.md). 256 at the default 64 seats
/// (`callhook_core::DEFAULT_ENDPOINT_MAX_IN_FLIGHT`).
pub fn default_endpoint_cap(concurrency: usize) -> i32 {
    let places = concurrency.max(1) * UNRECORDED_PER_SLOT;
    i32::try_from(places).unwrap_or(i32::MAX).clamp(1, 1000)
}

/// The seats of one dispatcher.
#[derive(Clone, Debug)]
pub struct Seats {
    requests: Arc<Semaphore>,
    unrecorded: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
}

/// One worker's seat: see [`Seats`].
#[derive(Debug)]
pub struct Seat {
    request: OwnedSemaphorePermit,
    unrecorded: OwnedSemaphorePermit,
    seats: Seats,
}

/// A seat given up while its delivery waits for something else (its
/// receiver host's turn): its request slot and its place among the
/// unrecorded are free, and it holds a place in the waiting room instead, so
/// the wait costs no other delivery a seat.
#[derive(Debug)]
pub struct Aside {
    waiting: OwnedSemaphorePermit,
    seats: Seats,
}

impl Aside {
    /// A seat again, waiting for one (the place first, as [`Seats::take`]).
    /// Once the dispatcher has stopped, what it still holds instead, to be
    /// freed when its result is written.
    pub async fn back(self) -> Result<Seat, OwnedSemaphorePermit> {
        let unrecorded = match self.seats.unrecorded.clone().acquire_owned().await {
            Ok(place) => place,
            Err(_) => return Err(self.waiting),
        };
        match self.seats.requests.clone().acquire_owned().await {
            Ok(request) => Ok(Seat {
                request,
                unrecorded,
                seats: self.seats,
            }),
            Err(_) => Err(unrecorded),
        }
    }
}

impl Seat {
    /// Gives the request slot and the place among the unrecorded back while
    /// the delivery waits in the waiting room. With the waiting room full,
    /// `Err` with the place, kept until the delivery's result (back to the
    /// queue) is written: it does not wait in a place another delivery needs.
    pub fn step_aside(self) -> Result<Aside, OwnedSemaphorePermit> {
        drop(self.request);
        match self.seats.waiting.clone().try_acquire_owned() {
            Ok(waiting) => Ok(Aside {
                waiting,
                seats: self.seats,
            }),
            Err(_) => Err(self.unrecorded),
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
        let places = concurrency * UNRECORDED_PER_SLOT;
        Self {
            requests: Arc::new(Semaphore::new(concurrency)),
            unrecorded: Arc::new(Semaphore::new(places)),
            waiting: Arc::new(Semaphore::new(places)),
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
            seats: self.clone(),
        })
    }

    /// A seat if one is free now.
    pub fn try_take(&self) -> Option<Seat> {
        let unrecorded = self.unrecorded.clone().try_acquire_owned().ok()?;
        let request = self.requests.clone().try_acquire_owned().ok()?;
        Some(Seat {
            request,
            unrecorded,
            seats: self.clone(),
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
        self.waiting.close();
    }

    pub fn is_closed(&self) -> bool {
        self.requests.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_is_the_places_and_256_at_the_default_seats() {
        assert_eq!(
            default_endpoint_cap(64),
            callhook_core::DEFAULT_ENDPOINT_MAX_IN_FLIGHT
        );
        assert_eq!(default_endpoint_cap(16), 64);
        assert_eq!(default_endpoint_cap(1), 4);
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

    #[tokio::test]
    async fn a_delivery_waiting_for_its_host_holds_no_place_until_the_waiting_room_is_full() {
        let seats = Seats::new(1);
        let places = UNRECORDED_PER_SLOT;
        let mut waiting = Vec::new();
        for _ in 0..places {
            let aside = seats.try_take().expect("a seat").step_aside();
            waiting.push(aside.expect("room in the waiting room"));
        }
        let full = seats
            .try_take()
            .expect("every place still free")
            .step_aside()
            .expect_err("the waiting room is full: it keeps its place");
        let mut sent = Vec::new();
        for _ in 1..places {
            sent.push(seats.try_take().expect("a place").sent());
        }
        assert!(
            seats.try_take().is_none(),
            "one place kept by the refused aside, the rest sent"
        );
        let back = waiting.pop().unwrap();
        let pending = tokio::spawn(back.back());
        drop(sent.pop());
        let seat = pending.await.unwrap().expect("a seat once a place is free");
        assert!(seats.try_take().is_none(), "it took the freed place");
        let aside = seat.step_aside();
        assert!(aside.is_ok(), "its waiting-room place was free again");
        assert!(
            seats.try_take().is_some(),
            "and the place it gave back is free"
        );
        drop(full);
    }
}
