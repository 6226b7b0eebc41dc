//! The router: which path goes where, behind which token.

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;
use tower::limit::{ConcurrencyLimitLayer, GlobalConcurrencyLimitLayer};
use tower::load_shed::error::Overloaded;
use tower::{BoxError, ServiceBuilder};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::{require_bearer, RequiredToken};
use crate::{ApiError, AppState};

pub(crate) mod audit;
pub(crate) mod calls;
pub(crate) mod deliveries;
pub(crate) mod delivery_views;
pub(crate) mod endpoints;
pub(crate) mod gauges;
pub(crate) mod recordings;
pub(crate) mod scenarios;
pub(crate) mod service;
pub(crate) mod test_send;
pub(crate) mod visits;

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
        .route(
            "/api/v1/scenarios/{id}/filter-preview",
            post(test_send::filter_preview),
        )
        .route("/api/v1/calls/{id}", get(deliveries::get_call))
        .route("/api/v1/deliveries", get(deliveries::list))
        .route("/api/v1/deliveries/retry", post(deliveries::retry_matching))
        .route("/api/v1/deliveries/{id}", get(deliveries::get))
        .route("/api/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route(
            "/api/v1/scenarios/{id}/secret/rotate",
            post(scenarios::rotate_secret),
        )
        .route("/api/v1/endpoints", get(endpoints::list))
        .route("/api/v1/audit-log", get(audit::list))
        .route(
            "/api/v1/scenarios/{id}/endpoints/{kind}/pause",
            post(endpoints::pause),
        )
        .route(
            "/api/v1/scenarios/{id}/endpoints/{kind}/enable",
            post(endpoints::enable),
        )
        .route(
            "/api/v1/scenarios/{id}/endpoints/{kind}/limits",
            put(endpoints::set_limits),
        )
        .route(
            "/api/v1/scenarios/{id}/endpoints/{kind}/send-now",
            post(endpoints::send_now),
        )
        .route_layer(from_fn_with_state(
            RequiredToken {
                tokens: std::sync::Arc::new(state.tokens.admin.clone()),
                api: "admin",
                throttle: state.throttle.clone(),
            },
            require_bearer,
        ));

    /// Batch requests handled at once (the others wait their turn). Two,
    /// not four: a batch of a thousand calls is ~120 ms of Postgres CPU, and
    /// four at once took both cores of the measured machine, so one
    /// customer's flood delayed every other customer's single calls (the
    /// quiet scenario's p99 beside a 30,000-call flood: 45-46 ms with four,
    /// 21-22 ms with two; the batch's delivered rate did not fall:
    /// docs/performance.md, "Two batches at once").
    const BATCHES_AT_ONCE: usize = 2;

    // A burst beyond capacity is answered `503 overloaded` at once (one
    // semaphore shared by the ingest routes) instead of queueing until the
    // database pool and memory give out.
    let ingest = Router::new()
        .route("/api/v1/calls", post(calls::start))
        // A batch holds up to 2 MiB of JSON and its thousand parsed calls:
        // a few at once keep Postgres busy, more would only hold memory, so
        // the rest wait (unread) for their turn.
        .route(
            "/api/v1/calls/batch",
            post(calls::start_batch).layer(ConcurrencyLimitLayer::new(BATCHES_AT_ONCE)),
        )
        .route("/api/v1/calls/{id}/end", post(calls::end))
        .route("/api/v1/calls/{id}/recording", post(recordings::recording))
        .route("/api/v1/visits", post(visits::reserve))
        .route_layer(from_fn_with_state(
            RequiredToken {
                tokens: std::sync::Arc::new(state.tokens.ingest.clone()),
                api: "ingest",
                throttle: state.throttle.clone(),
            },
            require_bearer,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(
                    state.settings.max_inflight_requests.max(1),
                )),
        );

    let console = if state.settings.console {
        crate::console::router()
    } else {
        Router::new()
    };
    finish(
        Router::new()
            .merge(admin)
            .merge(ingest)
            .merge(console)
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
    let request_timeout = state.settings.request_timeout;
    let throttle = state.throttle.clone();
    gauges::spawn_refresher(
        state.pool.clone(),
        state.settings.gauge_interval,
        std::sync::Arc::downgrade(&state.alive),
    );
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(from_fn_with_state(
            throttle,
            crate::throttle::forwarded_only_from_trusted,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        // A request (reading a dribbled body included) gets
        // `CALLHOOK_HTTP_REQUEST_TIMEOUT`; slow headers are cut off by the server.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(timed_out))
                .timeout(request_timeout),
        )
}

/// The request timeout's answer: `408` with the usual error body.
async fn timed_out(e: BoxError) -> ApiError {
    if e.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request took too long (a body sent too slowly?)",
        )
    } else {
        ApiError::internal(&*e)
    }
}

/// The load shedder's answer: `503` with `Retry-After`.
async fn overloaded(e: BoxError) -> ApiError {
    if e.is::<Overloaded>() {
        metrics::counter!("callhook_requests_shed_total").increment(1);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in progress; retry shortly",
        )
    } else {
        ApiError::internal(&*e)
    }
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
