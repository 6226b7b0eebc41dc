//! Admin API: scenarios.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use callhook_core::{
    CustomField, CustomFields, DeliveryKind, FieldError, PhoneNumber, SigningSecret, Timezone,
    WebhookUrl,
};
use callhook_store::scenarios::{self, Scenario, ScenarioSettings, StaticNumber};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Actor;
use crate::error::ErrorBody;
use crate::json::{JsonObject, PathParam};
use crate::routes::audit::{self, Action};
use crate::routes::endpoints::{health_of, HealthView};
use crate::{ApiError, AppState};

/// A scenario as the API shows it. `PUT` accepts this very shape back.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScenarioView {
    pub id: Uuid,
    pub name: String,
    /// Where the during-call webhook goes; null = off.
    pub during_call_url: Option<String>,
    /// Where the after-call webhook goes; null = off.
    pub after_call_url: Option<String>,
    #[schema(value_type = Vec<CustomFieldSchema>)]
    pub custom_fields: Vec<CustomField>,
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

/// A static number (offline ads): never reserved; calls to it carry its
/// `marker`, `source_level_1` and `source_level_2`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticNumberView {
    /// Written any way people write them; stored as digits.
    pub number: String,
    #[serde(default)]
    pub marker: Option<String>,
    #[serde(default)]
    pub source_level_1: Option<String>,
    #[serde(default)]
    pub source_level_2: Option<String>,
}

/// One custom field: `value` may hold `{placeholders}` naming payload fields.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes the JSON shape in the OpenAPI document"
)]
pub struct CustomFieldSchema {
    name: String,
    value: String,
}

impl From<Scenario> for ScenarioView {
    fn from(s: Scenario) -> Self {
        Self {
            id: s.id,
            name: s.name,
            during_call_url: s.during_call_url,
            after_call_url: s.after_call_url,
            custom_fields: s.custom_fields.0,
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

/// A scenario's settings. Only `name` is required; the rest default to no
/// URLs, no custom fields, no numbers and `Europe/Moscow`. Read-only fields
/// (`id`, `signing_secret`, timestamps) are accepted and ignored, so what
/// `GET` returns can be sent back as is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioInput {
    /// Not blank, at most 255 characters.
    #[schema(min_length = 1)]
    pub name: String,
    /// Empty string or null = no during-call webhook.
    #[serde(default)]
    pub during_call_url: Option<String>,
    /// Empty string or null = no after-call webhook.
    #[serde(default)]
    pub after_call_url: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<CustomFieldSchema>>)]
    pub custom_fields: Option<Vec<CustomField>>,
    /// Written any way people write them (`+7 (800) 555-22-33`); stored as digits.
    #[serde(default)]
    pub numbers: Option<Vec<String>>,
    /// Numbers outside the pool with fixed fields; a number is in `numbers`
    /// or here, not both.
    #[serde(default)]
    pub static_numbers: Option<Vec<StaticNumberView>>,
    #[serde(default)]
    pub timezone: Option<String>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub id: Option<serde_json::Value>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub signing_secret: Option<serde_json::Value>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub previous_secret_expires_at: Option<serde_json::Value>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub created_at: Option<serde_json::Value>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub updated_at: Option<serde_json::Value>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub health: Option<serde_json::Value>,
}

impl ScenarioInput {
    /// What the webhook bodies depend on (the custom fields and the zone),
    /// checked as a save checks them: the console's live preview uses it.
    pub(crate) fn payload_parts(&self) -> Result<(CustomFields, Timezone), FieldError> {
        let fields = CustomFields::parse(self.custom_fields.clone().unwrap_or_default())?;
        let timezone = match &self.timezone {
            Some(tz) => Timezone::parse(tz, "timezone")?,
            None => Timezone::default(),
        };
        Ok((fields, timezone))
    }

    pub(crate) fn into_settings(self) -> Result<ScenarioSettings, FieldError> {
        // Checked here, reported in the order of the fields below.
        let payload_parts = self.payload_parts();
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            return Err(FieldError::new(
                "name",
                "required",
                "name must not be empty",
            ));
        }
        callhook_core::call::check_text("name", &name, 255)?;
        let url = |v: Option<String>, field| match v {
            Some(s) => WebhookUrl::parse_optional(&s, field),
            None => Ok(None),
        };
        let numbers = self
            .numbers
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, n)| PhoneNumber::parse(n, &format!("numbers[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen: std::collections::HashSet<String> =
            numbers.iter().map(|n| n.as_str().to_owned()).collect();
        let mut static_numbers = Vec::new();
        for (i, n) in self
            .static_numbers
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let field = |name: &str| format!("static_numbers[{i}].{name}");
            let number = PhoneNumber::parse(&n.number, &field("number"))?;
            if !seen.insert(number.as_str().to_owned()) {
                return Err(FieldError::new(
                    field("number"),
                    "duplicate_number",
                    format!("number {number} is listed twice; a number is either in numbers or in static_numbers, once"),
                ));
            }
            let text = |v: Option<String>, name: &str| {
                v.map(|t| {
                    callhook_core::call::check_text(
                        &field(name),
                        &t,
                        callhook_core::call::MAX_FIELD_LEN,
                    )
                    .map(str::to_owned)
                })
                .transpose()
            };
            static_numbers.push(StaticNumber {
                number: number.as_str().to_owned(),
                marker: text(n.marker, "marker")?,
                source_level_1: text(n.source_level_1, "source_level_1")?,
                source_level_2: text(n.source_level_2, "source_level_2")?,
            });
        }
        let during_call_url = url(self.during_call_url, "during_call_url")?;
        let after_call_url = url(self.after_call_url, "after_call_url")?;
        let (custom_fields, timezone) = payload_parts?;
        Ok(ScenarioSettings {
            static_numbers,
            name,
            during_call_url,
            after_call_url,
            custom_fields,
            numbers,
            timezone,
        })
    }
}

fn scenario_not_found(id: Uuid) -> impl FnOnce(ApiError) -> ApiError {
    move |e| {
        if e.status == StatusCode::NOT_FOUND {
            ApiError::not_found(format!("scenario {id} does not exist"))
        } else {
            e
        }
    }
}

/// Create a scenario.
#[utoipa::path(post, path = "/api/v1/scenarios", tag = "scenarios", request_body = ScenarioInput,
    security(("admin_token" = [])),
    responses((status = 201, body = ScenarioView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "a number belongs to another scenario"),
              (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: JsonObject,
) -> Result<(StatusCode, Json<ScenarioView>), ApiError> {
    let settings = body.parse::<ScenarioInput>()?.into_settings()?;
    let secret = state.sealer.seal(&SigningSecret::generate());
    let scenario = scenarios::create(&state.pool, &settings, &secret).await?;
    tracing::info!(scenario_id = %scenario.id, "scenario created");
    audit::record(&state, &actor, Action::ScenarioCreate, Some(scenario.id), serde_json::json!({"name": scenario.name, "during_call_url": scenario.during_call_url, "after_call_url": scenario.after_call_url, "numbers": scenario.numbers})).await;
    Ok((StatusCode::CREATED, Json(view(&state, scenario).await?)))
}

/// List scenarios, oldest first.
#[utoipa::path(get, path = "/api/v1/scenarios", tag = "scenarios", security(("admin_token" = [])),
    responses((status = 200, body = Vec<ScenarioView>), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<ScenarioView>>, ApiError> {
    let all = scenarios::list(&state.pool).await?;
    Ok(Json(views(&state, all).await?))
}

/// Get one scenario.
#[utoipa::path(get, path = "/api/v1/scenarios/{id}", tag = "scenarios", security(("admin_token" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ScenarioView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    PathParam(id): PathParam<Uuid>,
) -> Result<Json<ScenarioView>, ApiError> {
    let s = scenarios::get(&state.pool, id)
        .await
        .map_err(ApiError::from)
        .map_err(scenario_not_found(id))?;
    Ok(Json(view(&state, s).await?))
}

/// Save a scenario: the whole settings at once. Pending retries use the new
/// URLs; a removed URL cancels them.
#[utoipa::path(put, path = "/api/v1/scenarios/{id}", tag = "scenarios", request_body = ScenarioInput,
    security(("admin_token" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = ScenarioView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn save(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam(id): PathParam<Uuid>,
    body: JsonObject,
) -> Result<Json<ScenarioView>, ApiError> {
    let settings = body.parse::<ScenarioInput>()?.into_settings()?;
    let (s, saved) = scenarios::update(&state.pool, id, &settings, &state.settings.health)
        .await
        .map_err(ApiError::from)
        .map_err(scenario_not_found(id))?;
    count_cancelled(&saved.cancelled);
    for (kind, t) in saved.enabled {
        callhook_dispatch::transitions::announce(id, kind, t, None);
    }
    tracing::info!(scenario_id = %id, cancelled = saved.cancelled.len(), "scenario saved");
    audit::record(&state, &actor, Action::ScenarioSave, Some(id), serde_json::json!({"name": s.name, "during_call_url": {"before": saved.before.0, "after": s.during_call_url}, "after_call_url": {"before": saved.before.1, "after": s.after_call_url}, "numbers": s.numbers, "cancelled": saved.cancelled.len()})).await;
    Ok(Json(view(&state, s).await?))
}

/// Delete a scenario; its pending deliveries are cancelled, history stays.
#[utoipa::path(delete, path = "/api/v1/scenarios/{id}", tag = "scenarios", security(("admin_token" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam(id): PathParam<Uuid>,
) -> Result<StatusCode, ApiError> {
    let cancelled = scenarios::delete(&state.pool, id)
        .await
        .map_err(ApiError::from)
        .map_err(scenario_not_found(id))?;
    count_cancelled(&cancelled);
    tracing::info!(scenario_id = %id, cancelled = cancelled.len(), "scenario deleted");
    audit::record(
        &state,
        &actor,
        Action::ScenarioDelete,
        Some(id),
        serde_json::json!({"cancelled": cancelled.len()}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Deliveries a save or a delete cancelled count as the dispatcher's
/// cancellations do.
fn count_cancelled(kinds: &[DeliveryKind]) {
    for kind in kinds {
        metrics::counter!("callhook_deliveries_total", "kind" => kind.as_str(), "outcome" => "cancelled")
            .increment(1);
    }
}

/// Rotate the scenario's signing secret. The answer shows the new secret;
/// for `CALLHOOK_SECRET_ROTATION_OVERLAP` (24 h by default) webhooks carry
/// two signatures, one per secret, space-separated, so receivers can switch
/// keys without rejecting a webhook.
#[utoipa::path(post, path = "/api/v1/scenarios/{id}/secret/rotate", tag = "scenarios",
    security(("admin_token" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = ScenarioView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam(id): PathParam<Uuid>,
) -> Result<Json<ScenarioView>, ApiError> {
    let secret = state.sealer.seal(&SigningSecret::generate());
    let s = scenarios::rotate_secret(
        &state.pool,
        id,
        &secret,
        state.settings.secret_rotation_overlap,
    )
    .await
    .map_err(ApiError::from)
    .map_err(scenario_not_found(id))?;
    tracing::info!(scenario_id = %id, overlap_until = ?s.previous_secret_expires_at, "signing secret rotated");
    audit::record(
        &state,
        &actor,
        Action::SecretRotate,
        Some(id),
        serde_json::json!({"previous_secret_expires_at": s.previous_secret_expires_at}),
    )
    .await;
    Ok(Json(view(&state, s).await?))
}
