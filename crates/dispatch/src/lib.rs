//! Outbound delivery: the worker pool that claims due deliveries from the
//! store (or takes them from this process's ingest through the hand-off, and
//! paused endpoints' probes), sends each webhook over one shared HTTP
//! connection pool through the destination guard (and the operator's egress
//! proxy, if any), and records every attempt with the delivery's new state
//! and its endpoint's health. Operator events go out the same way.
//!
//! No axum here; the API's test-send goes through [`Sender`] like any webhook.

pub mod guard;
pub mod handoff;
pub mod seats;
pub mod sender;
pub mod transitions;
pub mod worker;

pub use callhook_core::AttemptError;
pub use handoff::{handoff, Handoff, HandoffInbox};
pub use seats::{default_endpoint_cap, Seat, Seats};
pub use sender::{AttemptResult, Sender, SenderConfig, Webhook};
pub use worker::{run, DispatchConfig, OperatorWebhook};
