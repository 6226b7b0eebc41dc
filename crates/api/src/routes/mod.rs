//! The router: which path goes where, behind which token.

use std::time::Duration;

use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::{require_bearer, RequiredToken};
use crate::{ApiError, AppState};

pub mod calls;
pub mod deliveries;
pub mod gauges;
pub mod scenarios;
pub mod service;
pub mod test_send;
pub mod visits;

/// The whole HTTP app. Separate from serving so tests can drive it.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route(
            "/api/v1/scenarios",
            post(scenarios::create).get(scenarios::list),
        )
        .route(
            "/api/v1/scenarios/{id}",
            get(scenarios::get)
                .put(scenarios::save)
                .delete(scenarios::delete),
        )
        .route("/api/v1/scenarios/{id}/pool", get(visits::pool))
        .route("/api/v1/scenarios/{id}/test", post(test_send::test_send))
        .route("/api/v1/calls/{id}", get(deliveries::get_call))
        .route("/api/v1/deliveries", get(deliveries::list))
        .route("/api/v1/deliveries/retry", post(deliveries::retry_matching))
        .route("/api/v1/deliveries/{id}", get(deliveries::get))
        .route("/api/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route_layer(from_fn_with_state(
            RequiredToken(state.tokens.admin.clone()),
            require_bearer,
        ));

    let ingest = Router::new()
        .route("/api/v1/calls", post(calls::start))
        .route("/api/v1/calls/{id}/end", post(calls::end))
        .route("/api/v1/visits", post(visits::reserve))
        .route_layer(from_fn_with_state(
            RequiredToken(state.tokens.ingest.clone()),
            require_bearer,
        ));

    finish(
        Router::new()
            .merge(admin)
            .merge(ingest)
            .merge(service_routes()),
        state,
    )
}

/// Only the service endpoints (health, readiness, metrics, OpenAPI): what a
/// dispatcher-only process serves.
pub fn service_router(state: AppState) -> Router {
    finish(service_routes(), state)
}

fn service_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .route("/openapi.json", get(service::openapi))
}

fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        // A request (reading a dribbled body included) gets 30 s.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route; see /openapi.json",
    )
}
