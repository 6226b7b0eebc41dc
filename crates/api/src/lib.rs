//! callhook's HTTP surface: the admin API (scenarios, calls, deliveries), the
//! ingest API (call events from the telephony side), the operator's console
//! and the service endpoints (health, readiness, metrics, OpenAPI).
//!
//! [`router`] builds the whole app from an [`AppState`] without binding a
//! socket, so tests can drive it directly. Every admin operation is one
//! function of `ops`, which the REST routes and the console both call.
//! Outbound HTTP (the test-send) goes through `callhook-dispatch`, never
//! through a client of its own.

mod auth;
mod console;
mod error;
mod json;
mod openapi;
mod ops;
mod routes;
mod state;
mod throttle;

pub use auth::{Actor, NamedToken};
pub use error::ApiError;
pub use routes::{router, service_router};
pub use state::{install_metrics, ApiSettings, AppState, IngestSettings, Tokens};
