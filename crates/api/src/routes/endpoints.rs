//! Admin API: endpoint health. An endpoint is a scenario's during-call URL
//! or its after-call URL; the rules are `callhook_core::health`.

use std::collections::HashMap;

use axum::extract::State;
use axum::Extension;
use axum::Json;
use callhook_core::{DeliveryKind, EndpointState};
use callhook_store::health::{self, EndpointRow, Switched};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Actor;
use crate::error::ErrorBody;
use crate::json::{PathParam, QueryParams};
use crate::ops;
pub(crate) use crate::ops::endpoints::LimitsBody;
use crate::ops::endpoints::{kind_param, EndpointAction};
use crate::{ApiError, AppState};

/// One endpoint's health.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct EndpointView {
    pub scenario_id: Uuid,
    pub scenario_name: String,
    /// `during_call` or `after_call`.
    #[schema(value_type = String, example = "after_call")]
    pub kind: DeliveryKind,
    /// The scenario's URL of this kind (null: that webhook is off).
    pub url: Option<String>,
    /// `healthy`, `failing`, `paused` or `disabled`.
    #[schema(value_type = String, example = "healthy")]
    pub state: EndpointState,
    /// When it entered its state.
    pub since: DateTime<Utc>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last failed attempt's error (`timeout`, `http_503`, …).
    pub last_error: Option<String>,
    pub consecutive_failures: i32,
    /// Its pending deliveries (waiting, parked, or due).
    pub deliveries_waiting: i64,
    /// Pending and due now: waiting for a seat, its cap or its rate.
    pub deliveries_due: i64,
    /// Being sent now, by every dispatcher.
    pub deliveries_in_flight: i64,
    /// Webhooks in flight at once in force now: its `max_in_flight` (else
    /// `CALLHOOK_ENDPOINT_MAX_IN_FLIGHT`), lower while the receiver answers
    /// 429/503 or times out.
    pub cap: i32,
    /// Its own in-flight limit (null: the dispatcher's default).
    pub max_in_flight: Option<i32>,
    /// Its own rate limit, webhooks per second (null: none).
    pub max_per_second: Option<f32>,
}

impl EndpointView {
    /// The view of a row, with the dispatcher's default cap for one that
    /// sets none.
    pub(crate) fn new(e: EndpointRow, default_cap: i32) -> Self {
        Self {
            scenario_id: e.scenario_id,
            scenario_name: e.scenario_name,
            kind: e.kind,
            url: e.url,
            state: e.state,
            since: e.since,
            last_success_at: e.last_success_at,
            last_error: e.last_error,
            consecutive_failures: e.consecutive_failures,
            deliveries_waiting: e.deliveries_waiting,
            deliveries_due: e.deliveries_due,
            deliveries_in_flight: e.deliveries_in_flight,
            cap: e.cap.unwrap_or(default_cap),
            max_in_flight: e.max_in_flight,
            max_per_second: e.max_per_second,
        }
    }
}

/// A scenario's two endpoints.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct HealthView {
    pub during_call: EndpointView,
    pub after_call: EndpointView,
}

/// The health of these scenarios' endpoints, by scenario.
pub(crate) async fn health_of(
    state: &AppState,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, HealthView>, ApiError> {
    let mut during = HashMap::new();
    let mut after = HashMap::new();
    let cap = state.settings.health.endpoint_cap;
    for e in health::of_scenarios(&state.pool, ids).await? {
        match e.kind {
            DeliveryKind::DuringCall => during.insert(e.scenario_id, EndpointView::new(e, cap)),
            _ => after.insert(e.scenario_id, EndpointView::new(e, cap)),
        };
    }
    Ok(ids
        .iter()
        .filter_map(|id| {
            Some((
                *id,
                HealthView {
                    during_call: during.remove(id)?,
                    after_call: after.remove(id)?,
                },
            ))
        })
        .collect())
}

/// The list's filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EndpointsQuery {
    /// `healthy`, `failing`, `paused` or `disabled`.
    #[param(value_type = Option<String>, example = "paused")]
    pub state: Option<EndpointState>,
}

/// Every endpoint (or those in `state`), worst first: disabled, paused,
/// failing, healthy; the longest in its state first.
#[utoipa::path(get, path = "/api/v1/endpoints", tag = "endpoints", security(("admin_token" = [])),
    params(EndpointsQuery),
    responses((status = 200, body = Vec<EndpointView>), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<EndpointsQuery>,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    let rows = health::list(&state.pool, q.state).await?;
    let cap = state.settings.health.endpoint_cap;
    Ok(Json(
        rows.into_iter()
            .map(|e| EndpointView::new(e, cap))
            .collect(),
    ))
}

/// What a pause or an enable did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SwitchedView {
    pub endpoint: EndpointView,
    /// Enable: how many waiting deliveries will now go (drained at
    /// `CALLHOOK_DRAIN_RATE`). Pause: how many now wait.
    pub deliveries: u64,
}

fn switched(state: &AppState, s: Switched) -> Json<SwitchedView> {
    Json(SwitchedView {
        endpoint: EndpointView::new(s.endpoint, state.settings.health.endpoint_cap),
        deliveries: s.deliveries,
    })
}

/// Pause an endpoint by hand: its deliveries wait (their retry schedule
/// unspent) and no probe goes until it is enabled.
#[utoipa::path(post, path = "/api/v1/scenarios/{id}/endpoints/{kind}/pause", tag = "endpoints",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path), ("kind" = String, Path, description = "during_call or after_call")),
    responses((status = 200, body = SwitchedView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam((id, kind)): PathParam<(Uuid, String)>,
) -> Result<Json<SwitchedView>, ApiError> {
    let kind = kind_param(&kind)?;
    let s = ops::endpoints::switch(&state, &actor, id, kind, EndpointAction::Pause).await?;
    Ok(switched(&state, s))
}

/// Enable an endpoint (paused, disabled or failing): healthy again, and
/// its waiting deliveries drain, oldest first.
#[utoipa::path(post, path = "/api/v1/scenarios/{id}/endpoints/{kind}/enable", tag = "endpoints",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path), ("kind" = String, Path, description = "during_call or after_call")),
    responses((status = 200, body = SwitchedView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn enable(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam((id, kind)): PathParam<(Uuid, String)>,
) -> Result<Json<SwitchedView>, ApiError> {
    let kind = kind_param(&kind)?;
    let s = ops::endpoints::switch(&state, &actor, id, kind, EndpointAction::Enable).await?;
    Ok(switched(&state, s))
}

/// How many deliveries a send-now made due.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SentNowView {
    /// Waiting for a retry, now due (at `CALLHOOK_DRAIN_RATE`).
    pub deliveries: u64,
}

/// Send now: every delivery of this endpoint waiting for its next retry is
/// made due at once (at `CALLHOOK_DRAIN_RATE`), for when its receiver has
/// been fixed. A call's after-call webhook still goes after its during-call
/// one; a paused endpoint's deliveries wait until it is enabled.
#[utoipa::path(post, path = "/api/v1/scenarios/{id}/endpoints/{kind}/send-now", tag = "endpoints",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path), ("kind" = String, Path, description = "during_call or after_call")),
    responses((status = 200, body = SentNowView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn send_now(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam((id, kind)): PathParam<(Uuid, String)>,
) -> Result<Json<SentNowView>, ApiError> {
    let kind = kind_param(&kind)?;
    let deliveries = ops::endpoints::send_now(&state, &actor, id, kind).await?;
    Ok(Json(SentNowView { deliveries }))
}

/// Set an endpoint's own limits: how many webhooks may be in flight to it at
/// once, and how many per second. Claims on every dispatcher honour them at
/// once; a cap lowered by 429s starts again from the new limit.
#[utoipa::path(put, path = "/api/v1/scenarios/{id}/endpoints/{kind}/limits", tag = "endpoints",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path), ("kind" = String, Path, description = "during_call or after_call")),
    request_body = LimitsBody,
    responses((status = 200, body = EndpointView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn set_limits(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam((id, kind)): PathParam<(Uuid, String)>,
    body: crate::json::JsonObject,
) -> Result<Json<EndpointView>, ApiError> {
    let kind = kind_param(&kind)?;
    let input = body.parse::<LimitsBody>()?;
    let row = ops::endpoints::set_limits(&state, &actor, id, kind, &input).await?;
    Ok(Json(EndpointView::new(
        row,
        state.settings.health.endpoint_cap,
    )))
}
