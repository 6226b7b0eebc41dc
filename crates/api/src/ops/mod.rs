//! The operations layer: every admin operation, once. Each function does
//! the store call, the announcements (endpoint transitions), the metrics and
//! the typed audit event, and returns a typed result; the REST routes
//! (`crate::routes`) and the console (`crate::console`) are thin adapters
//! over it (parse, call, render). A rule an operator can trigger lives here
//! or below, never in a front end (docs/architecture.md).
//!
//! A module of `callhook-api` rather than a crate of its own: its inputs
//! are the API's documented input shapes (`ScenarioInput`, `LimitsInput`,
//! …, with their OpenAPI schemas) and its errors are [`ApiError`]s, which
//! each front end renders its own way (JSON, or an HTML page).
//!
//! [`ApiError`]: crate::ApiError

pub(crate) mod audit;
pub(crate) mod deliveries;
pub(crate) mod durations;
pub(crate) mod endpoints;
pub(crate) mod filter_preview;
pub(crate) mod scenario_input;
pub(crate) mod scenarios;
pub(crate) mod test_send;

use uuid::Uuid;

use crate::ApiError;

/// The answer to a scenario that does not exist.
pub(crate) fn no_scenario(id: Uuid) -> ApiError {
    ApiError::not_found(format!("scenario {id} does not exist"))
}

/// A store error, a missing row answered as the scenario that is not there.
pub(crate) fn scenario_error(id: Uuid) -> impl FnOnce(callhook_store::StoreError) -> ApiError {
    missing_scenario(id, None)
}

/// [`scenario_error`], the missing scenario named at the path's `id` (the
/// endpoint and test-send routes answer so); any other error as it is.
pub(crate) fn scenario_error_at_id(
    id: Uuid,
) -> impl FnOnce(callhook_store::StoreError) -> ApiError {
    missing_scenario(id, Some("id"))
}

fn missing_scenario(
    id: Uuid,
    field: Option<&'static str>,
) -> impl FnOnce(callhook_store::StoreError) -> ApiError {
    move |e| match (e, field) {
        (callhook_store::StoreError::NotFound, Some(f)) => no_scenario(id).with_field(f),
        (callhook_store::StoreError::NotFound, None) => no_scenario(id),
        (e, _) => e.into(),
    }
}
