//! callhook's HTTP surface: the admin API (scenarios, calls, deliveries), the
//! ingest API (call events from the telephony side), and the service
//! endpoints (health, readiness, metrics, OpenAPI).
//!
//! [`router`] builds the whole app from an [`AppState`] without binding a
//! socket, so tests can drive it directly. Outbound HTTP (the test-send) goes
//! through `callhook-dispatch`, never through a client of its own.

pub mod auth;
pub mod console;
pub mod error;
pub mod json;
pub mod openapi;
pub mod routes;
pub mod state;

pub use auth::{Actor, NamedToken};
pub use error::ApiError;
pub use routes::router;
pub use state::{ApiSettings, AppState, IngestSettings, Tokens};
