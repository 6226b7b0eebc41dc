//! A delivery's kind, state and why one was cancelled: each stored as text
//! (`deliveries.kind`, `.state`, `.last_error`) and an enum everywhere else.
//!
//! With the `sqlx` feature each is also an `sqlx::Type` of Postgres `text`,
//! so the store reads and writes them as they are. (The derive is a trait
//! impl: this crate still does no IO.)

use std::fmt;

use crate::FieldError;

/// An endpoint's in-flight cap when it sets none
/// (`CALLHOOK_ENDPOINT_MAX_IN_FLIGHT`): deliveries claimed and not yet
/// recorded, on every dispatcher together. One dispatcher's places for
/// deliveries sent and awaiting their recording (four per seat, 64 seats):
/// a lone busy endpoint fills a dispatcher's pipeline, and a slow one's rows
/// wait for their host in the waiting room, holding no place anyone else
/// needs (docs/scheduling.md).
pub const DEFAULT_ENDPOINT_MAX_IN_FLIGHT: i32 = 256;

/// A delivery's priority class in the claim (`delivery_class` in SQL, the
/// number its index stores): fresh during-call webhooks first, then fresh
/// after-call ones, then retries, then operators' requeues. A lower class
/// waits at most its slack behind higher ones (docs/scheduling.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PriorityClass {
    /// A during-call webhook's first attempt (and operator events).
    FreshDuringCall = 0,
    /// An after-call webhook's first attempt.
    FreshAfterCall = 1,
    /// Any webhook after a failed attempt.
    Retry = 2,
    /// Put back by an operator (bulk recover).
    Requeue = 3,
}

impl PriorityClass {
    pub const ALL: [PriorityClass; 4] = [
        Self::FreshDuringCall,
        Self::FreshAfterCall,
        Self::Retry,
        Self::Requeue,
    ];

    /// The class stored as `delivery_class(...)` returns it.
    pub fn from_number(n: i16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as i16 == n)
    }

    /// Its label in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FreshDuringCall => "during_call",
            Self::FreshAfterCall => "after_call",
            Self::Retry => "retry",
            Self::Requeue => "requeue",
        }
    }
}

text_enum! {
    /// The two webhooks a call produces.
    pub enum DeliveryKind ("kind", "invalid_kind") {
        /// Sent at the moment of the call (when the platform dials the client).
        DuringCall = "during_call",
        /// Sent once the call is over, with status, duration and recording.
        AfterCall = "after_call",
        /// Not a call's: an event for the operator (`endpoint.paused`, …),
        /// sent to `CALLHOOK_OPERATOR_WEBHOOK_URL`.
        OperatorEvent = "operator_event",
    }
}

/// An endpoint: one of a scenario's two URLs. Distinct from
/// [`DeliveryKind`], which also names operator events, so that "pause an
/// operator event" cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    DuringCall,
    AfterCall,
}

impl EndpointKind {
    pub const ALL: [EndpointKind; 2] = [Self::DuringCall, Self::AfterCall];

    /// `during_call` or `after_call` (a path's `{kind}`, a form's `kind`);
    /// anything else is an error at `field`.
    pub fn parse(text: &str, field: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    "invalid_kind",
                    format!("{field} must be during_call or after_call"),
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        DeliveryKind::from(self).as_str()
    }
}

impl EndpointKind {
    /// The endpoint a delivery of `kind` goes to; `None` for an operator
    /// event.
    pub fn of(kind: DeliveryKind) -> Option<Self> {
        match kind {
            DeliveryKind::DuringCall => Some(Self::DuringCall),
            DeliveryKind::AfterCall => Some(Self::AfterCall),
            DeliveryKind::OperatorEvent => None,
        }
    }
}

impl From<EndpointKind> for DeliveryKind {
    fn from(k: EndpointKind) -> Self {
        match k {
            EndpointKind::DuringCall => Self::DuringCall,
            EndpointKind::AfterCall => Self::AfterCall,
        }
    }
}

impl std::fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DeliveryKind {
    /// The kinds a call produces, each with its own URL in a scenario (an
    /// endpoint).
    pub const CALL_KINDS: [DeliveryKind; 2] = [DeliveryKind::DuringCall, DeliveryKind::AfterCall];
}

text_enum! {
    /// Where a delivery stands.
    pub enum DeliveryState ("state", "invalid_state") {
        /// Not yet delivered: due at `next_attempt_at`, or waiting for its
        /// call's during-call delivery (`blocked_by`).
        Pending = "pending",
        /// A 2xx came back.
        Delivered = "delivered",
        /// Its retry schedule ran out.
        Failed = "failed",
        /// Never to be sent; `last_error` says why ([`CancelReason`]).
        Cancelled = "cancelled",
    }
}

text_enum! {
    /// Why a delivery was cancelled (its `last_error`).
    pub enum CancelReason ("reason", "invalid_reason") {
        /// The scenario was saved without this kind's URL.
        UrlRemoved = "url_removed",
        /// The scenario was deleted.
        ScenarioDeleted = "scenario_deleted",
        /// A start that arrived after its call's after-call webhook had gone
        /// out: a "call in progress" after "call ended" would mislead.
        CallAlreadyEnded = "call_already_ended",
        /// Its body would pass `CALLHOOK_MAX_PAYLOAD_BYTES` (the call's
        /// values, expanded into the scenario's custom fields): never sent.
        PayloadTooLarge = "payload_too_large",
        /// The webhook's conditions (the scenario's `during_call_filter` or
        /// `after_call_filter`) did not hold for the call: the delivery's
        /// `filtered_by` names the one that failed.
        Filtered = "filtered",
        /// A during-call webhook still not delivered when its call had
        /// ended `CALLHOOK_DURING_CALL_GRACE` ago: its moment has passed,
        /// and its after-call webhook carries every field it had.
        CallEnded = "call_ended",
    }
}

text_enum! {
    /// Why a delivery is held, unsent, until an operator fixes something
    /// (its `last_error` meanwhile); its retry schedule is not spent.
    pub enum HeldReason ("reason", "invalid_reason") {
        /// The scenario's stored signing secret cannot be opened (a wrong
        /// `CALLHOOK_SECRET_KEY`): never an unsigned webhook.
        InvalidSigningSecret = "invalid_signing_secret",
        /// A secret header's stored value cannot be opened (a wrong
        /// `CALLHOOK_SECRET_KEY`): never a request without it.
        InvalidHeaderSecret = "invalid_header_secret",
    }
}

impl DeliveryState {
    /// Delivered, failed or cancelled: nothing more happens to it by itself.
    pub fn is_final(self) -> bool {
        self != Self::Pending
    }
}

text_enum! {
    /// Why an attempt got no HTTP answer. The names are what
    /// `delivery_attempts.error` (and a delivery's `last_error`) hold.
    pub enum AttemptError ("error", "invalid_error") {
        /// No complete answer within the request timeout (or connect timeout).
        Timeout = "timeout",
        /// The connection was refused, reset or otherwise failed.
        Connect = "connect",
        /// The receiver's host name did not resolve.
        Dns = "dns",
        /// TLS handshake or certificate failure.
        Tls = "tls",
        /// The destination is internal and private destinations are not
        /// allowed; nothing was sent.
        BlockedDestination = "blocked_destination",
        /// The connection broke after the request was sent (no status read).
        Request = "request",
    }
}

/// Why a delivery is not delivered (yet), as one value: what its
/// `last_error` and `last_status` columns say together, read at the Rust
/// edge. Its text ([`fmt::Display`]) is the one failure text shown
/// everywhere: the API's `last_error`, the console, health's last error,
/// and (the same rule in SQL) psql's `delivery_log.error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastError {
    /// Never to be sent.
    Cancelled(CancelReason),
    /// Held, unsent, until an operator fixes something.
    Held(HeldReason),
    /// The last attempt got no HTTP answer.
    Transport(AttemptError),
    /// The last attempt's answer was not a 2xx.
    Status(i32),
    /// Text this version does not write (an older one did, or a hand).
    Other(String),
}

impl LastError {
    /// Reads the columns: the error text when there is one, else a status
    /// that is not 2xx; `None` when nothing went wrong.
    pub fn read(status: Option<i32>, error: Option<&str>) -> Option<Self> {
        match (error, status) {
            (Some(e), _) => Some(
                e.parse()
                    .map(Self::Transport)
                    .or_else(|_| e.parse().map(Self::Cancelled))
                    .or_else(|_| e.parse().map(Self::Held))
                    .unwrap_or_else(|_| Self::Other(e.to_owned())),
            ),
            (None, Some(s)) if !(200..300).contains(&s) => Some(Self::Status(s)),
            _ => None,
        }
    }
}

impl fmt::Display for LastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled(r) => f.write_str(r.as_str()),
            Self::Held(r) => f.write_str(r.as_str()),
            Self::Transport(e) => f.write_str(e.as_str()),
            Self::Status(s) => write!(f, "http_{s}"),
            Self::Other(t) => f.write_str(t),
        }
    }
}

/// The one failure text of a delivery or an attempt ([`LastError`]):
/// `timeout`, `connect`, …, a cancel or hold reason, else `http_<status>`.
pub fn failure_text(status: Option<i32>, error: Option<&str>) -> Option<String> {
    LastError::read(status, error).map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_kind_is_a_call_kind_and_nothing_else() {
        for k in EndpointKind::ALL {
            assert_eq!(EndpointKind::parse(k.as_str(), "kind").unwrap(), k);
            assert!(DeliveryKind::CALL_KINDS.contains(&k.into()));
        }
        let e = EndpointKind::parse("operator_event", "kind").unwrap_err();
        assert_eq!(e.message, "kind must be during_call or after_call");
    }

    #[test]
    fn the_last_error_reads_both_columns_as_one_value_and_one_text() {
        let cases = [
            (
                (Some(500), None),
                Some(LastError::Status(500)),
                Some("http_500"),
            ),
            ((Some(200), None), None, None),
            ((None, None), None, None),
            (
                (None, Some("timeout")),
                Some(LastError::Transport(AttemptError::Timeout)),
                Some("timeout"),
            ),
            (
                (Some(503), Some("url_removed")),
                Some(LastError::Cancelled(CancelReason::UrlRemoved)),
                Some("url_removed"),
            ),
            (
                (None, Some("invalid_signing_secret")),
                Some(LastError::Held(HeldReason::InvalidSigningSecret)),
                Some("invalid_signing_secret"),
            ),
            (
                (None, Some("written by hand")),
                Some(LastError::Other("written by hand".into())),
                Some("written by hand"),
            ),
        ];
        for ((status, error), value, text) in cases {
            assert_eq!(
                LastError::read(status, error),
                value,
                "{status:?} {error:?}"
            );
            assert_eq!(failure_text(status, error).as_deref(), text);
        }
    }

    #[test]
    fn names_round_trip() {
        for k in DeliveryKind::ALL {
            assert_eq!(k.as_str().parse::<DeliveryKind>().unwrap(), *k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for s in DeliveryState::ALL {
            assert_eq!(s.as_str().parse::<DeliveryState>().unwrap(), *s);
        }
        for r in CancelReason::ALL {
            assert_eq!(r.to_string().parse::<CancelReason>().unwrap(), *r);
        }
        assert_eq!("sent".parse::<DeliveryState>().unwrap_err().field, "state");
        assert_eq!(
            "x".parse::<DeliveryKind>().unwrap_err().message,
            "kind must be one of during_call, after_call, operator_event"
        );
    }

    #[test]
    fn a_failure_reads_as_its_transport_error_else_its_status() {
        assert_eq!(
            failure_text(None, Some("timeout")).as_deref(),
            Some("timeout")
        );
        assert_eq!(
            failure_text(Some(503), Some("timeout")).as_deref(),
            Some("timeout")
        );
        assert_eq!(failure_text(Some(500), None).as_deref(), Some("http_500"));
        assert_eq!(failure_text(Some(204), None), None);
        assert_eq!(failure_text(None, None), None);
    }
}
