//! A test send: a scenario's webhook with the page's example call, sent
//! now through the dispatcher's own [`callhook_dispatch::Sender`] (signing,
//! destination guard, timeouts), recorded in `delivery_attempts` marked
//! `is_test`, audited; a success at the endpoint's own URL enables it.

use callhook_core::{build_payload, DeliveryKind, EndpointKind, SigningSecret, WebhookUrl};
use callhook_dispatch::Webhook;
use callhook_store::scenarios::Scenario;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::{self, AuditEvent};
use super::scenario_error_at_id;
use crate::auth::Actor;
use crate::{ApiError, AppState};

/// What to test.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestSendInput {
    /// `during_call` or `after_call`: which payload, and which of the
    /// scenario's URLs when `url` is not given.
    #[schema(value_type = String, example = "after_call")]
    pub(crate) kind: DeliveryKind,
    /// Send here instead of the scenario's URL (absolute http/https).
    #[serde(default)]
    pub(crate) url: Option<String>,
}

/// The test attempt's outcome.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TestSendResult {
    /// The receiver's HTTP status; null when no response came back.
    pub(crate) status: Option<u16>,
    pub(crate) duration_ms: i32,
    /// Null on a response; otherwise `timeout`, `connect`, `dns`, `tls`,
    /// `blocked_destination` or `request`.
    pub(crate) error: Option<String>,
    /// The first 4 KiB of the answer.
    pub(crate) response_body: Option<String>,
    /// The URL used.
    pub(crate) url: String,
    /// The `webhook-id` sent (`test_…`).
    pub(crate) webhook_id: String,
    /// The recorded attempt's id (`delivery_attempts.id`, `is_test`).
    pub(crate) attempt_id: i64,
    pub(crate) started_at: DateTime<Utc>,
    /// The request's headers as sent, signature included.
    pub(crate) request_headers: std::collections::BTreeMap<String, String>,
    /// The request's body as sent (the page's example call).
    pub(crate) payload: String,
}

/// A test send, as the API and the console do it: sent, recorded, audited;
/// a success at the endpoint's own URL enables it.
pub(crate) async fn run(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    kind: EndpointKind,
    url: Option<&str>,
) -> Result<TestSendResult, ApiError> {
    let scenario = callhook_store::scenarios::get(&state.pool, id)
        .await
        .map_err(scenario_error_at_id(id))?;
    let url = destination(&scenario, kind, url)?;
    let tz = scenario.tz()?;
    let call =
        callhook_core::payload::example_call(tz, kind == EndpointKind::AfterCall, Utc::now());
    let payload = build_payload(&call, kind.into(), &scenario.fields(), tz);
    let secrets = [signing_key(state, &scenario)?];
    let custom = webhook_headers(state, &scenario, kind)?;
    let webhook_id = format!("test_{}", Uuid::now_v7());
    let hook = Webhook {
        url: &url,
        id: &webhook_id,
        payload: &payload,
        secrets: &secrets,
        custom: &custom,
    };
    let result = state.sender.send(hook).await;
    // As sent, but a secret header's value, which is never shown again.
    let request_headers = hook
        .headers(result.started_at.timestamp())
        .into_iter()
        .map(|(k, v)| {
            let v = if is_secret(&scenario, kind, &k) {
                callhook_core::headers::SECRET_SHOWN.to_owned()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    let record = callhook_dispatch::worker::attempt_record(&url, &result);
    let attempt_id =
        callhook_store::log::record_test_attempt(&state.pool, id, kind.into(), &record).await?;
    tracing::info!(scenario_id = %id, %kind, status = ?result.status,
        error = ?result.error_text(), "test send");
    let event = AuditEvent::TestSend {
        kind,
        url: url.clone(),
        status: result.status,
        error: result.error_text().map(str::to_owned),
    };
    audit::record(state, actor, Some(id), event).await;
    // A receiver that answers at the endpoint's own URL is back: enable it.
    // What waits for a retry there goes now (brought forward before the
    // enable drains the parked ones at the drain rate).
    if result.is_success() && scenario.url_for(kind.into()) == Some(url.as_str()) {
        super::endpoints::bring_forward(state, id, kind).await?;
        let health = &state.settings.health;
        let s = callhook_store::health::enable(&state.pool, id, kind.into(), health).await?;
        if let Some(t) = s.transition {
            callhook_dispatch::transitions::announce(id, kind.into(), t, None);
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

/// Where the test goes: `url` when given (checked as a scenario's URL is),
/// else the scenario's own URL of this kind.
fn destination(
    scenario: &callhook_store::scenarios::Scenario,
    kind: EndpointKind,
    url: Option<&str>,
) -> Result<String, ApiError> {
    match url {
        Some(u) => Ok(WebhookUrl::parse(u, "url")?.into_string()),
        None => scenario
            .url_for(kind.into())
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "url",
                    "no_url",
                    format!("the scenario has no {kind} URL: set one or give url"),
                )
            }),
    }
}

/// The scenario's current signing key; unreadable (a wrong
/// `CALLHOOK_SECRET_KEY`), nothing is sent.
fn signing_key(
    state: &AppState,
    scenario: &callhook_store::scenarios::Scenario,
) -> Result<SigningSecret, ApiError> {
    let id = scenario.id;
    state.sealer.key(&scenario.signing_secret, scenario.id).map_err(|e| {
        tracing::error!(scenario_id = %id, error = %e, "the scenario's stored signing secret cannot be read; nothing sent");
        ApiError::unprocessable(
            "signing_secret",
            "invalid_signing_secret",
            format!("scenario {id}'s stored signing secret cannot be read ({e}): check CALLHOOK_SECRET_KEY, or rotate it (POST /api/v1/scenarios/{id}/secret/rotate)"),
        )
    })
}

pub(crate) fn webhook_headers(
    state: &AppState,
    scenario: &Scenario,
    kind: EndpointKind,
) -> Result<Vec<(String, String)>, ApiError> {
    let headers = scenario.headers(kind);
    callhook_core::headers::to_send(headers, &state.sealer, scenario.id, kind).map_err(
        |(header, e)| {
            callhook_store::StoreError::Corrupt(format!(
                "scenario {}'s secret header {header} cannot be read ({e}): check CALLHOOK_SECRET_KEY, or save the header's value again",
                scenario.id
            ))
            .into()
        },
    )
}

/// Whether `name` is one of the scenario's secret headers for `kind`.
pub(crate) fn is_secret(scenario: &Scenario, kind: EndpointKind, name: &str) -> bool {
    scenario
        .headers(kind)
        .iter()
        .any(|h| h.secret && h.name.eq_ignore_ascii_case(name))
}
