//! Whose turn it is behind the door.
//!
//! A free seat goes to the endpoint with the fewest webhooks this door is
//! sending now; among equals, to the one whose turn in the round comes
//! first (each endpoint's rows in arrival order). Counting turns alone gave
//! every endpoint an equal share of *requests*, but a slow receiver's request
//! holds its seat a hundred times longer than a fast one's: beside ten
//! receivers taking 500 ms, the quiet scenario got one seat in eleven, fewer
//! than its 20 calls a second, and its webhooks waited seconds
//! (docs/performance.md, "Seats by what each endpoint is sending"). By what
//! is in flight, every busy endpoint converges to an equal share of the
//! seats, and one sending nothing (a quiet scenario's next call) is seated at
//! the next free seat. Work-conserving: an endpoint alone takes every seat.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use callhook_core::DeliveryKind;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::Handed;

/// An endpoint's key behind the door: its scenario and kind (operator
/// events, and deliveries whose scenario is gone, share one).
type Endpoint = (Option<Uuid>, DeliveryKind);

fn endpoint_of(h: &Handed) -> Endpoint {
    (h.row.scenario_id, h.row.kind)
}

/// The rows behind the door, by endpoint, and the endpoints' turns.
#[derive(Debug, Default)]
pub(super) struct Queues {
    by_endpoint: HashMap<Endpoint, VecDeque<Handed>>,
    /// Endpoints with rows waiting, in the round's order.
    turns: VecDeque<Endpoint>,
    /// Rows taken from the door whose workers have not finished, by
    /// endpoint (an endpoint sending nothing has no entry).
    sending: HashMap<Endpoint, usize>,
    /// The dispatcher is gone: nothing more comes in.
    pub(super) closed: bool,
}

impl Queues {
    pub(super) fn push(&mut self, h: Handed) {
        let key = endpoint_of(&h);
        let q = self.by_endpoint.entry(key).or_default();
        if q.is_empty() {
            self.turns.push_back(key);
        }
        q.push_back(h);
    }

    /// The next row (see the module docs): its endpoint goes to the back of
    /// the round if it has more.
    pub(super) fn pop(&mut self) -> Option<Handed> {
        let at = self
            .turns
            .iter()
            .enumerate()
            .min_by_key(|(i, key)| (self.sending.get(*key).copied().unwrap_or(0), *i))
            .map(|(i, _)| i)?;
        let key = self.turns.remove(at)?;
        let q = self.by_endpoint.get_mut(&key)?;
        let h = q.pop_front();
        if q.is_empty() {
            self.by_endpoint.remove(&key);
        } else {
            self.turns.push_back(key);
        }
        h
    }

    /// When the longest-waiting row was handed over.
    pub(super) fn oldest(&self) -> Option<Instant> {
        self.by_endpoint
            .values()
            .filter_map(|q| q.front().map(|h| h.at))
            .min()
    }

    /// Every row handed over at or before `at`, out of the queues.
    pub(super) fn handed_by(&mut self, at: Instant) -> Vec<Handed> {
        let mut out = Vec::new();
        for q in self.by_endpoint.values_mut() {
            while q.front().is_some_and(|h| h.at <= at) {
                out.extend(q.pop_front());
            }
        }
        self.by_endpoint.retain(|_, q| !q.is_empty());
        let by_endpoint = &self.by_endpoint;
        self.turns.retain(|k| by_endpoint.contains_key(k));
        out
    }

    fn sent(&mut self, key: Endpoint) {
        if let Some(n) = self.sending.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.sending.remove(&key);
            }
        }
    }
}

/// What waits behind the door, shared by its two sides.
#[derive(Debug, Default)]
pub(super) struct Behind {
    queues: Mutex<Queues>,
    /// Rung when a row comes in.
    pub(super) arrived: Notify,
}

impl Behind {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next row to seat and its count among what its endpoint is
    /// sending; `None` when none waits.
    pub(super) fn take(self: &Arc<Self>) -> Option<(Handed, Sending)> {
        let mut q = self.lock();
        let h = q.pop()?;
        let endpoint = endpoint_of(&h);
        *q.sending.entry(endpoint).or_default() += 1;
        Some((
            h,
            Sending {
                behind: self.clone(),
                endpoint,
            },
        ))
    }
}

/// A row taken from the door, counted among what its endpoint is sending
/// until its worker drops this.
#[derive(Debug)]
pub struct Sending {
    behind: Arc<Behind>,
    endpoint: Endpoint,
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.behind.lock().sent(self.endpoint);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use callhook_store::queue::Claimed;

    use super::*;

    fn row(scenario: Uuid, kind: DeliveryKind) -> Claimed {
        Claimed {
            id: Uuid::now_v7(),
            call_id: Some("c".into()),
            kind,
            payload: "{}".into(),
            attempt_count: 0,
            created_at: chrono::Utc::now(),
            url: None,
            signing_secret: None,
            previous_signing_secret: None,
            lease_token: Uuid::now_v7(),
            scenario_id: Some(scenario),
            endpoint_state: None,
            probe: false,
            headers: None,
            expires_at: None,
        }
    }

    pub(in crate::handoff) fn handed(row: Claimed, at: Instant) -> Handed {
        Handed {
            row,
            at,
            from_ingest: false,
        }
    }

    pub(in crate::handoff) fn any_row() -> Claimed {
        row(Uuid::now_v7(), DeliveryKind::DuringCall)
    }

    #[tokio::test]
    async fn a_quiet_endpoint_waits_one_turn_behind_a_flood_not_the_flood() {
        let (flood, quiet) = (Uuid::now_v7(), Uuid::now_v7());
        let mut q = Queues::default();
        let at = Instant::now();
        for _ in 0..100 {
            q.push(handed(row(flood, DeliveryKind::AfterCall), at));
        }
        q.push(handed(row(quiet, DeliveryKind::DuringCall), at));
        let order: Vec<Option<Uuid>> = std::iter::from_fn(|| q.pop())
            .take(3)
            .map(|h| h.row.scenario_id)
            .collect();
        assert_eq!(order, [Some(flood), Some(quiet), Some(flood)]);
        assert_eq!(std::iter::from_fn(|| q.pop()).count(), 98, "nothing lost");
    }

    #[tokio::test]
    async fn a_seat_goes_to_the_endpoint_sending_the_fewest_whatever_the_round() {
        // Ten slow receivers' endpoints each have rows sending and more
        // waiting; a quiet endpoint's row comes in last, at the back of the
        // round.
        let behind = Arc::new(Behind::default());
        let at = Instant::now();
        let slow: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
        for s in &slow {
            for _ in 0..5 {
                behind
                    .lock()
                    .push(handed(row(*s, DeliveryKind::DuringCall), at));
            }
        }
        let mut sending: Vec<Sending> = (0..20)
            .map(|_| behind.take().expect("a slow row").1)
            .collect();
        let quiet = Uuid::now_v7();
        behind
            .lock()
            .push(handed(row(quiet, DeliveryKind::DuringCall), at));

        let (next, seat) = behind.take().expect("a row");
        assert_eq!(
            next.row.scenario_id,
            Some(quiet),
            "sending none, it goes first"
        );
        drop(seat);

        // Among equals, the round: the slow endpoints in turn, each once.
        let mut round: Vec<Option<Uuid>> = Vec::new();
        for _ in 0..10 {
            let (h, s) = behind.take().expect("a slow row");
            round.push(h.row.scenario_id);
            sending.push(s);
        }
        round.sort();
        round.dedup();
        assert_eq!(round.len(), 10, "one each: {round:?}");

        // A worker done: its endpoint sends one fewer and goes next.
        let done = sending.remove(0);
        let freed = done.endpoint;
        drop(done);
        let (h, _s) = behind.take().expect("a slow row");
        assert_eq!((h.row.scenario_id, h.row.kind), freed);
        drop(sending);
        assert!(
            behind.lock().sending.len() == 1,
            "only the row just taken is counted"
        );
    }

    #[tokio::test]
    async fn rows_that_waited_their_time_leave_in_one_go_and_the_rest_keep_their_turns() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut q = Queues::default();
        let early = Instant::now();
        let late = early + Duration::from_secs(1);
        q.push(handed(row(a, DeliveryKind::DuringCall), early));
        q.push(handed(row(a, DeliveryKind::DuringCall), late));
        q.push(handed(row(b, DeliveryKind::DuringCall), early));
        assert_eq!(q.oldest(), Some(early));
        assert_eq!(q.handed_by(early).len(), 2);
        assert_eq!(q.oldest(), Some(late));
        let left = q.pop().expect("a's later row");
        assert_eq!((left.row.scenario_id, left.at), (Some(a), late));
        assert!(q.pop().is_none() && q.turns.is_empty());
    }
}
