//! Admin API: scenarios.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use callhook_core::{Condition, CustomField, Header};
use callhook_store::scenarios::{self, Scenario};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Actor;
use crate::error::ErrorBody;
use crate::json::{JsonObject, PathParam};
pub(crate) use crate::ops::scenarios::{
    ConditionSchema, CustomFieldSchema, HeaderSchema, ScenarioInput, StaticNumberView,
};
use crate::ops::{self, scenario_error};
use crate::routes::endpoints::{health_of, HealthView};
use crate::{ApiError, AppState};

/// A scenario as the API shows it. `PUT` accepts this very shape back.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ScenarioView {
    pub id: Uuid,
    pub name: String,
    /// Where the during-call webhook goes; null = off.
    pub during_call_url: Option<String>,
    /// Where the after-call webhook goes; null = off.
    pub after_call_url: Option<String>,
    #[schema(value_type = Vec<CustomFieldSchema>)]
    pub custom_fields: Vec<CustomField>,
    /// Conditions every call must meet for its during-call webhook to be
    /// sent (`docs/payload.md`); absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Option<Vec<ConditionSchema>>)]
    pub during_call_filter: Vec<Condition>,
    /// The same for the after-call webhook.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Option<Vec<ConditionSchema>>)]
    pub after_call_filter: Vec<Condition>,
    /// Headers sent with every during-call webhook; a secret one's `value`
    /// is null (never shown again). Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Option<Vec<HeaderSchema>>)]
    pub during_call_headers: Vec<Header>,
    /// The same for the after-call webhook.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Option<Vec<HeaderSchema>>)]
    pub after_call_headers: Vec<Header>,
    /// Its own grace for a during-call webhook after its call's end
    /// (`"45s"`); absent: `CALLHOOK_DURING_CALL_GRACE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub during_call_grace: Option<String>,
    /// How long an after-call webhook whose call ended without a recording
    /// waits for one (`"2m"`); absent: it does not wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_wait: Option<String>,
    /// Tracking numbers, digits only: the pool reserved for website visits.
    pub numbers: Vec<String>,
    /// Numbers never reserved for visits; calls to them carry these fixed fields.
    pub static_numbers: Vec<StaticNumberView>,
    /// IANA time zone of the payload's `date`.
    pub timezone: String,
    /// `whsec_…`: the key receivers verify `webhook-signature` with.
    pub signing_secret: String,
    /// After a rotation: until then webhooks also carry a signature made
    /// with the previous secret. Null when no overlap is running.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Its endpoints' health (`GET /api/v1/endpoints` lists every endpoint).
    pub health: Option<HealthView>,
}

impl From<Scenario> for ScenarioView {
    fn from(s: Scenario) -> Self {
        Self {
            id: s.id,
            name: s.name,
            during_call_url: s.during_call_url,
            after_call_url: s.after_call_url,
            custom_fields: s.custom_fields.0,
            during_call_filter: s.during_call_filter.0,
            after_call_filter: s.after_call_filter.0,
            during_call_headers: s.during_call_headers.0.iter().map(Header::shown).collect(),
            after_call_headers: s.after_call_headers.0.iter().map(Header::shown).collect(),
            during_call_grace: crate::ops::scenarios::duration_text(s.during_call_grace_secs),
            recording_wait: crate::ops::scenarios::duration_text(s.recording_wait_secs),
            numbers: s.numbers,
            static_numbers: s
                .static_numbers
                .0
                .into_iter()
                .map(|n| StaticNumberView {
                    number: n.number,
                    marker: n.marker,
                    source_level_1: n.source_level_1,
                    source_level_2: n.source_level_2,
                })
                .collect(),
            timezone: s.timezone,
            // Filled from the sealed form by `views`, which has the key.
            signing_secret: String::new(),
            previous_secret_expires_at: s.previous_secret_expires_at,
            created_at: s.created_at,
            updated_at: s.updated_at,
            health: None,
        }
    }
}

/// Scenarios as the API shows them, with their endpoints' health.
async fn views(state: &AppState, all: Vec<Scenario>) -> Result<Vec<ScenarioView>, ApiError> {
    let ids: Vec<Uuid> = all.iter().map(|s| s.id).collect();
    let mut health = health_of(state, &ids).await?;
    all.into_iter()
        .map(|s| {
            let secret = state.reveal(s.id, &s.signing_secret)?;
            let h = health.remove(&s.id);
            let mut v = ScenarioView::from(s);
            v.signing_secret = secret;
            v.health = h;
            Ok(v)
        })
        .collect()
}

async fn view(state: &AppState, s: Scenario) -> Result<ScenarioView, ApiError> {
    Ok(views(state, vec![s])
        .await?
        .pop()
        .expect("one view per scenario"))
}

/// Create a scenario.
#[utoipa::path(post, path = "/api/v1/scenarios", tag = "scenarios", request_body = ScenarioInput,
    security(("admin_token" = [])),
    responses((status = 201, body = ScenarioView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "a number belongs to another scenario"),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: JsonObject,
) -> Result<(StatusCode, Json<ScenarioView>), ApiError> {
    let scenario = ops::scenarios::create(&state, &actor, body.parse::<ScenarioInput>()?).await?;
    Ok((StatusCode::CREATED, Json(view(&state, scenario).await?)))
}

/// List scenarios, oldest first.
#[utoipa::path(get, path = "/api/v1/scenarios", tag = "scenarios", security(("admin_token" = [])),
    responses((status = 200, body = Vec<ScenarioView>), (status = 401, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<ScenarioView>>, ApiError> {
    let all = scenarios::list(&state.pool).await?;
    Ok(Json(views(&state, all).await?))
}

/// Get one scenario.
#[utoipa::path(get, path = "/api/v1/scenarios/{id}", tag = "scenarios", security(("admin_token" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ScenarioView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    PathParam(id): PathParam<Uuid>,
) -> Result<Json<ScenarioView>, ApiError> {
    let s = scenarios::get(&state.pool, id)
        .await
        .map_err(scenario_error(id))?;
    Ok(Json(view(&state, s).await?))
}

/// Save a scenario: the whole settings at once. Pending retries use the new
/// URLs; a removed URL cancels them.
#[utoipa::path(put, path = "/api/v1/scenarios/{id}", tag = "scenarios", request_body = ScenarioInput,
    security(("admin_token" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = ScenarioView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn save(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam(id): PathParam<Uuid>,
    body: JsonObject,
) -> Result<Json<ScenarioView>, ApiError> {
    let s = ops::scenarios::save(&state, &actor, id, body.parse::<ScenarioInput>()?).await?;
    Ok(Json(view(&state, s).await?))
}

/// Delete a scenario; its pending deliveries are cancelled, history stays.
#[utoipa::path(delete, path = "/api/v1/scenarios/{id}", tag = "scenarios", security(("admin_token" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam(id): PathParam<Uuid>,
) -> Result<StatusCode, ApiError> {
    ops::scenarios::delete(&state, &actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate the scenario's signing secret. The answer shows the new secret;
/// for `CALLHOOK_SECRET_ROTATION_OVERLAP` (24 h by default) webhooks carry
/// two signatures, one per secret, space-separated, so receivers can switch
/// keys without rejecting a webhook.
#[utoipa::path(post, path = "/api/v1/scenarios/{id}/secret/rotate", tag = "scenarios",
    security(("admin_token" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = ScenarioView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam(id): PathParam<Uuid>,
) -> Result<Json<ScenarioView>, ApiError> {
    let s = ops::scenarios::rotate_secret(&state, &actor, id).await?;
    Ok(Json(view(&state, s).await?))
}
