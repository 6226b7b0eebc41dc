//! Admin API: send a scenario's webhook with a sample payload now, through
//! the dispatcher's own [`callhook_dispatch::Sender`] (signing, destination
//! guard, timeouts), and answer with what happened. The attempt is recorded
//! in `delivery_attempts` marked `is_test`.

use axum::extract::State;
use axum::Extension;
use axum::Json;
use callhook_core::{build_payload, DeliveryKind, SigningSecret, WebhookUrl};
use callhook_dispatch::Webhook;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Actor;
use crate::error::ErrorBody;
use crate::json::{JsonObject, PathParam};
use crate::routes::audit::{self, Action};
use crate::{ApiError, AppState};

/// What to test.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSendInput {
    /// `during_call` or `after_call`: which payload, and which of the
    /// scenario's URLs when `url` is not given.
    #[schema(value_type = String, example = "after_call")]
    pub kind: DeliveryKind,
    /// Send here instead of the scenario's URL (absolute http/https).
    #[serde(default)]
    pub url: Option<String>,
}

/// The test attempt's outcome.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestSendResult {
    /// The receiver's HTTP status; null when no response came back.
    pub status: Option<u16>,
    pub duration_ms: i32,
    /// Null on a response; otherwise `timeout`, `connect`, `dns`, `tls`,
    /// `blocked_destination` or `request`.
    pub error: Option<String>,
    /// The first 4 KiB of the answer.
    pub response_body: Option<String>,
    /// The URL used.
    pub url: String,
    /// The `webhook-id` sent (`test_…`).
    pub webhook_id: String,
    /// The recorded attempt's id (`delivery_attempts.id`, `is_test`).
    pub attempt_id: i64,
    pub started_at: DateTime<Utc>,
    /// The request's headers as sent, signature included.
    pub request_headers: std::collections::BTreeMap<String, String>,
    /// The request's body as sent (the page's example call).
    pub payload: String,
}

/// Send a sample webhook now and answer with the outcome (a receiver's 500
/// or an unreachable URL is still a `200` here: the outcome is the answer).
/// Signed with the scenario's secret, through the destination guard and
/// timeouts of real deliveries; recorded as a test attempt.
#[utoipa::path(post, path = "/api/v1/scenarios/{id}/test", tag = "scenarios", request_body = TestSendInput,
    security(("admin_token" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = TestSendResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "bad kind or url, or the scenario has no URL for that kind")))]
pub async fn test_send(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam(id): PathParam<Uuid>,
    body: JsonObject,
) -> Result<Json<TestSendResult>, ApiError> {
    let input = body.parse::<TestSendInput>()?;
    Ok(Json(run(&state, &actor, id, input).await?))
}

/// A test send, as the API and the console do it: sent, recorded, audited;
/// a success at the endpoint's own URL enables it.
pub(crate) async fn run(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    input: TestSendInput,
) -> Result<TestSendResult, ApiError> {
    if input.kind == DeliveryKind::OperatorEvent {
        return Err(ApiError::unprocessable(
            "kind",
            "invalid_kind",
            "kind must be during_call or after_call",
        ));
    }
    let scenario = callhook_store::scenarios::get(&state.pool, id)
        .await
        .map_err(|e| match e {
            callhook_store::StoreError::NotFound => {
                ApiError::not_found(format!("scenario {id} does not exist")).with_field("id")
            }
            e => e.into(),
        })?;
    let url = match input.url.as_deref() {
        Some(u) => WebhookUrl::parse(u, "url")?.into_string(),
        None => scenario
            .url_for(input.kind)
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "url",
                    "no_url",
                    format!(
                        "the scenario has no {} URL: set one or give url",
                        input.kind
                    ),
                )
            })?,
    };
    let tz = scenario.tz()?;
    let payload = build_payload(
        &callhook_core::payload::example_call(
            tz,
            input.kind == DeliveryKind::AfterCall,
            Utc::now(),
        ),
        input.kind,
        &scenario.fields(),
        tz,
    );
    let secrets: Vec<SigningSecret> = vec![state.sealer.key(&scenario.signing_secret).map_err(|e| {
        tracing::error!(scenario_id = %id, error = %e, "the scenario's stored signing secret cannot be read; nothing sent");
        ApiError::unprocessable(
            "signing_secret",
            "invalid_signing_secret",
            format!("scenario {id}'s stored signing secret cannot be read ({e}): check CALLHOOK_SECRET_KEY, or rotate it (POST /api/v1/scenarios/{id}/secret/rotate)"),
        )
    })?];
    let webhook_id = format!("test_{}", Uuid::now_v7());
    let hook = Webhook {
        url: &url,
        id: &webhook_id,
        payload: &payload,
        secrets: &secrets,
    };
    let result = state.sender.send(hook).await;
    let request_headers = hook
        .headers(result.started_at.timestamp())
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let record = callhook_dispatch::worker::attempt_record(&url, &result);
    let attempt_id =
        callhook_store::log::record_test_attempt(&state.pool, id, input.kind, &record).await?;
    tracing::info!(scenario_id = %id, kind = %input.kind, status = ?result.status,
        error = ?result.error_text(), "test send");
    audit::record(state, actor, Action::TestSend, Some(id),
        serde_json::json!({"kind": input.kind, "url": url, "status": result.status, "error": result.error_text()})).await;
    // A receiver that answers at the endpoint's own URL is back: enable it.
    if result.is_success() && scenario.url_for(input.kind) == Some(url.as_str()) {
        let s = callhook_store::health::enable(&state.pool, id, input.kind, &state.settings.health)
            .await?;
        if let Some(t) = s.transition {
            callhook_dispatch::transitions::announce(id, input.kind, t, None);
        }
    }
    Ok(TestSendResult {
        status: result.status,
        duration_ms: record.duration_ms,
        error: record.error,
        response_body: record.response_body,
        url,
        webhook_id,
        attempt_id,
        started_at: record.started_at,
        request_headers,
        payload: String::from_utf8_lossy(&payload).into_owned(),
    })
}
