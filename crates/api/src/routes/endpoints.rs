//! Admin API: endpoint health. An endpoint is a scenario's during-call URL
//! or its after-call URL; the rules are `callhook_core::health`.

use std::collections::HashMap;

use axum::extract::State;
use axum::Extension;
use axum::Json;
use callhook_core::{DeliveryKind, EndpointState, FieldError};
use callhook_store::health::{self, EndpointRow, Switched};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Actor;
use crate::error::ErrorBody;
use crate::json::{PathParam, QueryParams};
use crate::routes::audit::{self, Action};
use crate::{ApiError, AppState};

/// One endpoint's health.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointView {
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
}

impl From<EndpointRow> for EndpointView {
    fn from(e: EndpointRow) -> Self {
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
        }
    }
}

/// A scenario's two endpoints.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    pub during_call: EndpointView,
    pub after_call: EndpointView,
}

/// The health of these scenarios' endpoints, by scenario.
pub async fn health_of(
    state: &AppState,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, HealthView>, ApiError> {
    let mut during = HashMap::new();
    let mut after = HashMap::new();
    for e in health::of_scenarios(&state.pool, ids).await? {
        match e.kind {
            DeliveryKind::DuringCall => during.insert(e.scenario_id, e.into()),
            _ => after.insert(e.scenario_id, e.into()),
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
pub struct EndpointsQuery {
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
pub async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<EndpointsQuery>,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    let rows = health::list(&state.pool, q.state).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// What a pause or an enable did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SwitchedView {
    pub endpoint: EndpointView,
    /// Enable: how many waiting deliveries will now go (drained at
    /// `CALLHOOK_DRAIN_RATE`). Pause: how many now wait.
    pub deliveries: u64,
}

fn kind_param(kind: &str) -> Result<DeliveryKind, ApiError> {
    match kind.parse::<DeliveryKind>() {
        Ok(k @ (DeliveryKind::DuringCall | DeliveryKind::AfterCall)) => Ok(k),
        _ => Err(FieldError::new(
            "kind",
            "invalid_kind",
            "kind must be during_call or after_call",
        )
        .into()),
    }
}

fn switched(id: Uuid, kind: DeliveryKind, s: Switched) -> Json<SwitchedView> {
    if let Some(t) = s.transition {
        callhook_dispatch::transitions::announce(id, kind, t, s.endpoint.last_error.as_deref());
    }
    Json(SwitchedView {
        endpoint: s.endpoint.into(),
        deliveries: s.deliveries,
    })
}

fn not_found(id: Uuid) -> impl FnOnce(callhook_store::StoreError) -> ApiError {
    move |e| match e {
        callhook_store::StoreError::NotFound => {
            ApiError::not_found(format!("scenario {id} does not exist")).with_field("id")
        }
        e => e.into(),
    }
}

/// Pause an endpoint by hand: its deliveries wait (their retry schedule
/// unspent) and no probe goes until it is enabled.
#[utoipa::path(post, path = "/api/v1/scenarios/{id}/endpoints/{kind}/pause", tag = "endpoints",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path), ("kind" = String, Path, description = "during_call or after_call")),
    responses((status = 200, body = SwitchedView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam((id, kind)): PathParam<(Uuid, String)>,
) -> Result<Json<SwitchedView>, ApiError> {
    let kind = kind_param(&kind)?;
    let s = health::pause(&state.pool, id, kind, &state.settings.health)
        .await
        .map_err(not_found(id))?;
    audit::record(&state, &actor, Action::EndpointPause, Some(id), serde_json::json!({"kind": kind, "transition": s.transition.map(|t| t.to.as_str()), "deliveries": s.deliveries})).await;
    Ok(switched(id, kind, s))
}

/// Enable an endpoint (paused, disabled or failing): healthy again, and
/// its waiting deliveries drain, oldest first.
#[utoipa::path(post, path = "/api/v1/scenarios/{id}/endpoints/{kind}/enable", tag = "endpoints",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path), ("kind" = String, Path, description = "during_call or after_call")),
    responses((status = 200, body = SwitchedView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn enable(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam((id, kind)): PathParam<(Uuid, String)>,
) -> Result<Json<SwitchedView>, ApiError> {
    let kind = kind_param(&kind)?;
    let s = health::enable(&state.pool, id, kind, &state.settings.health)
        .await
        .map_err(not_found(id))?;
    audit::record(&state, &actor, Action::EndpointEnable, Some(id), serde_json::json!({"kind": kind, "transition": s.transition.map(|t| t.to.as_str()), "deliveries": s.deliveries})).await;
    Ok(switched(id, kind, s))
}
