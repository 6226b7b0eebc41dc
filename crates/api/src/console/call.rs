//! A call's page: its fields, each delivery's exact body and attempts, the
//! request as a signed curl command, and "send again".

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use callhook_core::{DeliveryKind, DeliveryState, Timezone};
use callhook_store::log::Retried;
use callhook_store::{log, scenarios};
use uuid::Uuid;

use super::i18n::Lang;
use super::timeline::{carries_recording, has_recording, timeline, Moment};
use super::{key, page, redirect_with, render, ConsoleError, CsrfField, SignedForm, SignedPage};
use crate::ops;
use crate::AppState;

struct AttemptLine {
    attempt: i32,
    started: String,
    url: String,
    status: String,
    error: String,
    duration_ms: i32,
    response: String,
}

struct DeliveryBlock {
    id: Uuid,
    kind: DeliveryKind,
    state: DeliveryState,
    next: Option<String>,
    /// Why it is not sent, when it is cancelled or held (the failure text).
    why: Option<String>,
    /// Cancelled `filtered`: the condition the call did not meet, as JSON.
    filtered_by: Option<String>,
    payload: String,
    attempts: Vec<AttemptLine>,
    can_resend: bool,
    /// A final after-call webhook that went without the call's recording:
    /// it may be sent again with it (its body built again).
    can_resend_with_recording: bool,
    /// The exact signed request as a curl command (signed now), when the
    /// scenario still has a URL for it.
    curl: Option<String>,
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The webhook as callhook would send it now, as a curl command: its URL,
/// headers (signed with the scenario's current secret) and exact body.
fn as_curl(
    state: &AppState,
    scenario: &callhook_store::scenarios::Scenario,
    kind: DeliveryKind,
    id: Uuid,
    payload: &str,
) -> Option<String> {
    let url = scenario.url_for(kind)?;
    // Signed with the current secret (a rotation's old one aside).
    let secrets = [state
        .sealer
        .key(&scenario.signing_secret, scenario.id)
        .ok()?];
    let id = id.to_string();
    // Its headers, a secret one's value not shown.
    let custom: Vec<(String, String)> = callhook_core::EndpointKind::of(kind)
        .map(|k| {
            scenario
                .headers(k)
                .iter()
                .map(|h| (h.name.clone(), h.value_shown().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let hook = callhook_dispatch::Webhook {
        url,
        id: &id,
        payload: payload.as_bytes(),
        secrets: &secrets,
        custom: &custom,
    };
    let mut curl = format!("curl -sS -X POST {}", shell_quote(url));
    for (name, value) in hook.headers(chrono::Utc::now().timestamp()) {
        curl.push_str(" -H ");
        curl.push_str(&shell_quote(&format!("{name}: {value}")));
    }
    curl.push_str(" --data-binary ");
    curl.push_str(&shell_quote(payload));
    Some(curl)
}

#[derive(Template)]
#[template(path = "console/call.html")]
struct CallPage {
    lang: Lang,
    csrf: String,
    actor: String,
    call_id: String,
    fields: Vec<(String, String)>,
    timeline: Vec<Moment>,
    deliveries: Vec<DeliveryBlock>,
}

pub(super) async fn call_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, ConsoleError> {
    let id = callhook_core::call::parse_call_id(&id, "id")?;
    let Some(call) = log::call_json(&state.pool, &id).await? else {
        return Err(ConsoleError::not_found(format!("call {id} does not exist")));
    };
    let rows = log::of_call(&state.pool, &id).await?;
    let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
    let attempts = log::attempts(&state.pool, &ids).await?;
    let scenario_id = call
        .get("scenario_id")
        .and_then(|v| v.as_str()?.parse::<Uuid>().ok())
        .or_else(|| rows.iter().find_map(|d| d.scenario_id));
    let scenario = match scenario_id {
        Some(sid) => scenarios::get(&state.pool, sid).await.ok(),
        None => None,
    };
    let zone = scenario
        .as_ref()
        .and_then(|sc| sc.tz().ok())
        .unwrap_or(Timezone::UTC);
    let fields = call_fields(&call, zone);
    let timeline = timeline(&call, &rows, &attempts, zone, lang);
    let deliveries = blocks(&state, scenario.as_ref(), &call, rows, &attempts, zone);
    Ok(page(
        render(&CallPage {
            lang,
            csrf: key(&state).csrf(&s.session),
            actor: s.actor.0,
            call_id: id,
            fields,
            timeline,
            deliveries,
        })?,
        vec![s.renewed],
    ))
}

/// The call row's columns as they are, its moments on the scenario's clock.
fn call_fields(call: &serde_json::Value, zone: Timezone) -> Vec<(String, String)> {
    call.as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    let moment = k
                        .ends_with("_at")
                        .then(|| chrono::DateTime::parse_from_rfc3339(&text).ok())
                        .flatten();
                    let shown = moment.map_or(text, |t| zone.format_with_offset(t.to_utc()));
                    (k.clone(), shown)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Each delivery with its attempts, as the page shows them.
fn blocks(
    state: &AppState,
    scenario: Option<&callhook_store::scenarios::Scenario>,
    call: &serde_json::Value,
    rows: Vec<callhook_store::log::DeliveryRow>,
    attempts: &[callhook_store::log::AttemptRow],
    zone: Timezone,
) -> Vec<DeliveryBlock> {
    rows.into_iter()
        .map(|d| DeliveryBlock {
            curl: scenario.and_then(|sc| as_curl(state, sc, d.kind, d.id, &d.payload)),
            id: d.id,
            kind: d.kind,
            state: d.state,
            next: d.next_attempt_at.map(|t| zone.format_with_offset(t)),
            why: callhook_core::delivery::failure_text(d.last_status, d.last_error.as_deref()),
            filtered_by: d
                .filtered_by
                .as_ref()
                .and_then(|c| serde_json::to_string(&c.0).ok()),
            payload: d.payload.clone(),
            can_resend: d.state.is_final(),
            can_resend_with_recording: d.kind == DeliveryKind::AfterCall
                && d.state.is_final()
                && has_recording(call)
                && !carries_recording(&d.payload, call),
            attempts: attempts
                .iter()
                .filter(|a| a.delivery_id == Some(d.id))
                .map(|a| AttemptLine {
                    attempt: a.attempt,
                    started: zone.format_with_offset(a.started_at),
                    url: a.url.clone(),
                    status: a.response_status.map(|s| s.to_string()).unwrap_or_default(),
                    error: a.error.clone().unwrap_or_default(),
                    duration_ms: a.duration_ms,
                    response: a
                        .response_body
                        .as_deref()
                        .map(|b| b.chars().take(300).collect())
                        .unwrap_or_default(),
                })
                .collect(),
        })
        .collect()
}

/// "Send again", and "send again with the recording" (`rebuild`).
#[derive(serde::Deserialize)]
pub(super) struct ResendForm {
    csrf: String,
    /// Build the body again from the call as it is now.
    #[serde(default)]
    rebuild: bool,
}

impl CsrfField for ResendForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub(super) async fn resend(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    SignedForm { lang, s, form }: SignedForm<ResendForm>,
) -> Result<Response, ConsoleError> {
    let (Retried::Requeued(row) | Retried::SentNow(row)) =
        ops::deliveries::retry(&state, &s.actor, id, form.rebuild).await?;
    let back = row.call_id;
    let to = match back {
        Some(call) => super::urls::call(&call, lang),
        None => super::urls::Page::Deliveries.href(lang),
    };
    Ok(redirect_with(&to, &s.renewed))
}
