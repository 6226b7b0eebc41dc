//! Endpoint health: the state machine of one endpoint (a scenario's
//! during-call URL or after-call URL), fed with attempt results, and the
//! operator events its transitions produce.
//!
//! ```text
//! healthy ──(failing_after consecutive failures)──▶ failing
//! failing ──(no success for pause_after)──────────▶ paused   (probes every probe_interval)
//! failing/paused ──(no success for disable_after)─▶ disabled (nothing sent)
//! any ──(410 Gone)────────────────────────────────▶ disabled
//! failing/paused ──(a success)────────────────────▶ healthy  ("recovered")
//! ```
//!
//! Only an operator takes an endpoint out of `disabled` (or changes its URL).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

text_enum! {
    /// Where an endpoint stands.
    pub enum EndpointState ("state", "invalid_state") {
        /// Sent normally.
        Healthy = "healthy",
        /// Failing repeatedly; still sent normally; the operator is told.
        Failing = "failing",
        /// Not sent: its deliveries wait, and one goes as a probe now and then.
        Paused = "paused",
        /// Not sent at all until an operator enables it.
        Disabled = "disabled",
    }
}

impl EndpointState {
    /// Its deliveries wait (parked) instead of being sent.
    pub fn holds_deliveries(self) -> bool {
        matches!(self, Self::Paused | Self::Disabled)
    }
}

/// When an endpoint changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive failed attempts that make a healthy endpoint failing.
    pub failing_after: u32,
    /// No success for this long (since the first failure) pauses it.
    pub pause_after: Duration,
    /// While paused, one delivery is sent as a probe this often.
    pub probe_interval: Duration,
    /// No success for this long disables it.
    pub disable_after: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            failing_after: 5,
            pause_after: Duration::from_secs(3600),
            probe_interval: Duration::from_secs(300),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

/// An endpoint's health as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub state: EndpointState,
    /// When it entered `state`.
    pub since: DateTime<Utc>,
    pub consecutive_failures: i32,
    /// The first failure with no success after it.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Paused by its health: when the next probe may go.
    pub next_probe_at: Option<DateTime<Utc>>,
}

/// What one attempt told about its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A 2xx.
    Success,
    /// Anything else; `gone` for a `410 Gone`.
    Failure { error: String, gone: bool },
    /// Nothing was sent: its receiver's host had its share of requests in
    /// flight for the whole wait, and the delivery went back to the queue.
    /// Not a failure of the endpoint (its health does not change), but its
    /// cap is more than the receiver keeps up with.
    Busy,
}

impl Observed {
    /// The receiver asks for less: a `429`, a `503`, a timeout, or its
    /// host was busy for the whole wait. Its endpoint's in-flight cap halves
    /// (at most once a second) and grows back by one at a time while it
    /// answers (additive increase, multiplicative decrease;
    /// `callhook_store::queue::congestion`).
    pub fn asks_to_slow_down(&self) -> bool {
        match self {
            Observed::Busy => true,
            Observed::Failure { error, .. } => {
                matches!(error.as_str(), "http_429" | "http_503" | "timeout")
            }
            Observed::Success => false,
        }
    }

    /// Whether it tells anything about the endpoint's health (an attempt
    /// was made).
    pub fn is_attempt(&self) -> bool {
        !matches!(self, Observed::Busy)
    }
}

/// A change of state, for the log, the metrics and the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: EndpointState,
    pub to: EndpointState,
}

impl Transition {
    /// The operator event's type: `endpoint.failing`, `endpoint.paused`,
    /// `endpoint.disabled` or `endpoint.recovered`.
    pub fn event_type(self) -> &'static str {
        match self.to {
            EndpointState::Healthy => "endpoint.recovered",
            EndpointState::Failing => "endpoint.failing",
            EndpointState::Paused => "endpoint.paused",
            EndpointState::Disabled => "endpoint.disabled",
        }
    }
}

impl Health {
    /// A new endpoint.
    pub fn healthy(now: DateTime<Utc>) -> Self {
        Self {
            state: EndpointState::Healthy,
            since: now,
            consecutive_failures: 0,
            failing_since: None,
            last_success_at: None,
            last_error: None,
            next_probe_at: None,
        }
    }

    /// Takes one attempt's result at `now`; returns the transitions it
    /// caused, in order (a long streak may pass failing and paused at once).
    pub fn observe(
        &mut self,
        seen: &Observed,
        now: DateTime<Utc>,
        policy: &HealthPolicy,
    ) -> Vec<Transition> {
        let mut moves = Vec::new();
        match seen {
            Observed::Busy => {}
            Observed::Success => {
                self.consecutive_failures = 0;
                self.failing_since = None;
                self.last_success_at = Some(now);
                if matches!(self.state, EndpointState::Failing | EndpointState::Paused) {
                    self.go(EndpointState::Healthy, now, &mut moves);
                }
            }
            Observed::Failure { error, gone } => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let first = *self.failing_since.get_or_insert(now);
                self.last_error = Some(error.clone());
                let without_success = (now - first).to_std().unwrap_or_default();
                if *gone {
                    self.go(EndpointState::Disabled, now, &mut moves);
                }
                if self.state == EndpointState::Healthy
                    && self.consecutive_failures
                        >= i32::try_from(policy.failing_after).unwrap_or(i32::MAX)
                {
                    self.go(EndpointState::Failing, now, &mut moves);
                }
                if matches!(self.state, EndpointState::Failing | EndpointState::Paused) {
                    if without_success >= policy.disable_after {
                        self.go(EndpointState::Disabled, now, &mut moves);
                    } else if self.state == EndpointState::Failing
                        && without_success >= policy.pause_after
                    {
                        self.go(EndpointState::Paused, now, &mut moves);
                    }
                }
                if self.state == EndpointState::Paused && self.next_probe_at.is_some() {
                    // A probe failed (or one was in flight): the next in an interval.
                    self.next_probe_at = Some(now + policy.probe_interval);
                }
            }
        }
        moves
    }

    /// An operator's pause: no probes until enabled.
    pub fn pause_by_hand(&mut self, now: DateTime<Utc>) -> Option<Transition> {
        let mut moves = Vec::new();
        self.go(EndpointState::Paused, now, &mut moves);
        self.next_probe_at = None;
        moves.pop()
    }

    /// An operator's enable (or a URL change, or a successful test send):
    /// healthy again, counts reset.
    pub fn enable(&mut self, now: DateTime<Utc>) -> Option<Transition> {
        let mut moves = Vec::new();
        self.consecutive_failures = 0;
        self.failing_since = None;
        self.go(EndpointState::Healthy, now, &mut moves);
        moves.pop()
    }

    fn go(&mut self, to: EndpointState, now: DateTime<Utc>, moves: &mut Vec<Transition>) {
        if self.state == to {
            return;
        }
        moves.push(Transition {
            from: self.state,
            to,
        });
        self.state = to;
        self.since = now;
        self.next_probe_at = None;
    }

    /// Arms the first probe after an automatic pause.
    pub fn arm_probe(&mut self, now: DateTime<Utc>, policy: &HealthPolicy) {
        if self.state == EndpointState::Paused {
            self.next_probe_at = Some(now + policy.probe_interval);
        }
    }
}

/// The `data` of an operator event.
#[derive(Debug, Clone, Serialize)]
pub struct EventData<'a> {
    pub scenario_id: String,
    pub scenario_name: &'a str,
    pub kind: crate::DeliveryKind,
    pub url: Option<&'a str>,
    pub state: EndpointState,
    pub since: DateTime<Utc>,
    pub last_error: Option<&'a str>,
    pub deliveries_waiting: i64,
}

/// The exact body of an operator event:
/// `{"type", "timestamp", "data": {…}}`.
pub fn event_payload(event_type: &str, timestamp: DateTime<Utc>, data: &EventData<'_>) -> String {
    #[derive(Serialize)]
    struct Event<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        timestamp: DateTime<Utc>,
        data: &'a EventData<'a>,
    }
    serde_json::to_string(&Event {
        kind: event_type,
        timestamp,
        data,
    })
    .expect("an event serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            failing_after: 3,
            pause_after: Duration::from_secs(60),
            probe_interval: Duration::from_secs(10),
            disable_after: Duration::from_secs(600),
        }
    }

    fn fail() -> Observed {
        Observed::Failure {
            error: "http_503".into(),
            gone: false,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn failures_make_it_failing_then_paused_then_disabled() {
        let p = policy();
        let mut h = Health::healthy(at(0));
        assert!(h.observe(&fail(), at(0), &p).is_empty());
        assert!(h.observe(&fail(), at(1), &p).is_empty());
        let t = h.observe(&fail(), at(2), &p);
        assert_eq!(
            t,
            vec![Transition {
                from: EndpointState::Healthy,
                to: EndpointState::Failing
            }]
        );
        assert!(h.observe(&fail(), at(30), &p).is_empty());
        let t = h.observe(&fail(), at(61), &p);
        assert_eq!(t[0].to, EndpointState::Paused);
        h.arm_probe(at(61), &p);
        assert_eq!(h.next_probe_at, Some(at(71)));
        // A failed probe: the next one an interval later.
        assert!(h.observe(&fail(), at(72), &p).is_empty());
        assert_eq!(h.next_probe_at, Some(at(82)));
        let t = h.observe(&fail(), at(600), &p);
        assert_eq!(
            t,
            vec![Transition {
                from: EndpointState::Paused,
                to: EndpointState::Disabled
            }]
        );
        assert_eq!(h.since, at(600));
    }

    #[test]
    fn a_success_resets_and_recovers() {
        let p = policy();
        let mut h = Health::healthy(at(0));
        for s in 0..5 {
            h.observe(&fail(), at(s), &p);
        }
        assert_eq!(h.state, EndpointState::Failing);
        let t = h.observe(&Observed::Success, at(6), &p);
        assert_eq!(t[0].event_type(), "endpoint.recovered");
        assert_eq!((h.consecutive_failures, h.failing_since), (0, None));
        // A poisoned payload among successes never pauses it.
        for s in 0..100 {
            h.observe(&fail(), at(100 + 2 * s), &p);
            h.observe(&Observed::Success, at(101 + 2 * s), &p);
        }
        assert_eq!(h.state, EndpointState::Healthy);
    }

    #[test]
    fn gone_disables_at_once_and_a_long_silence_skips_ahead() {
        let p = policy();
        let mut h = Health::healthy(at(0));
        let t = h.observe(
            &Observed::Failure {
                error: "http_410".into(),
                gone: true,
            },
            at(0),
            &p,
        );
        assert_eq!(t[0].to, EndpointState::Disabled);
        let mut h = Health::healthy(at(0));
        h.observe(&fail(), at(0), &p);
        h.observe(&fail(), at(1), &p);
        let t = h.observe(&fail(), at(100), &p);
        let to: Vec<_> = t.iter().map(|t| t.to).collect();
        assert_eq!(to, vec![EndpointState::Failing, EndpointState::Paused]);
    }

    #[test]
    fn the_event_body_has_type_timestamp_and_data() {
        let body = event_payload(
            "endpoint.paused",
            at(0),
            &EventData {
                scenario_id: "0192".into(),
                scenario_name: "Main",
                kind: crate::DeliveryKind::AfterCall,
                url: Some("https://crm.example.com/after"),
                state: EndpointState::Paused,
                since: at(0),
                last_error: Some("http_503"),
                deliveries_waiting: 7,
            },
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "endpoint.paused");
        assert_eq!(v["data"]["kind"], "after_call");
        assert_eq!(v["data"]["state"], "paused");
        assert_eq!(v["data"]["deliveries_waiting"], 7);
        assert!(body.starts_with(r#"{"type":"endpoint.paused","timestamp":"#));
    }
}
