//! The delivery log and a call's page.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use callhook_core::{DeliveryKind, DeliveryState};
use callhook_store::log::{DeliveryFilter, Retried};
use callhook_store::{log, scenarios};
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::Lang;
use super::{
    key, lang, page, render, signed_post, CsrfForm, DeliveriesQuery, LangQuery, SignedPage, PAGE,
};
use crate::routes::audit::{self, Action};
use crate::AppState;

struct DeliveryLine {
    id: Uuid,
    created: String,
    call_id: Option<String>,
    kind: &'static str,
    state: &'static str,
    attempts: i32,
    last_error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/deliveries.html")]
struct DeliveriesPage {
    lang: Lang,
    csrf: String,
    actor: String,
    call_id: String,
    state: String,
    kind: String,
    states: Vec<&'static str>,
    kinds: Vec<&'static str>,
    rows: Vec<DeliveryLine>,
    /// The query of the next (older) page.
    next: Option<String>,
}

pub(super) async fn deliveries_page(
    State(state): State<AppState>,
    Query(q): Query<DeliveriesQuery>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, crate::ApiError> {
    let blank = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let filter = DeliveryFilter {
        call_id: blank(&q.call_id),
        state: blank(&q.state).and_then(|v| v.parse().ok()),
        kind: blank(&q.kind).and_then(|v| v.parse().ok()),
        ..DeliveryFilter::default()
    };
    let after = match blank(&q.after) {
        Some(a) => Some(crate::routes::deliveries::decode_cursor(&a)?),
        None => None,
    };
    // Keyset pages (older than the last id shown): new rows never shift them.
    let mut rows = log::list(&state.pool, &filter, after, PAGE as i64 + 1).await?;
    let next = (rows.len() > PAGE).then(|| {
        rows.truncate(PAGE);
        let last = rows.last().expect("a full page").id;
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("lang", lang.code());
        for (k, v) in [
            ("call_id", &filter.call_id),
            ("state", &blank(&q.state)),
            ("kind", &blank(&q.kind)),
        ] {
            if let Some(v) = v {
                query.append_pair(k, v);
            }
        }
        query.append_pair("after", &crate::routes::deliveries::encode_cursor(last));
        query.finish()
    });
    let rows = rows
        .into_iter()
        .map(|d| DeliveryLine {
            id: d.id,
            created: d.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            call_id: d.call_id,
            kind: d.kind.as_str(),
            state: d.state.as_str(),
            attempts: d.attempt_count,
            last_error: d.last_error,
        })
        .collect();
    Ok(page(
        render(&DeliveriesPage {
            lang,
            csrf: key(&state).csrf(&s.session),
            actor: s.actor.0,
            call_id: filter.call_id.clone().unwrap_or_default(),
            state: filter
                .state
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
            kind: filter
                .kind
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
            states: DeliveryState::ALL.iter().map(|v| v.as_str()).collect(),
            kinds: DeliveryKind::ALL.iter().map(|v| v.as_str()).collect(),
            rows,
            next,
        }),
        vec![s.renewed],
    ))
}

struct AttemptLine {
    attempt: i32,
    url: String,
    status: String,
    error: String,
    duration_ms: i32,
    response: String,
}

struct DeliveryBlock {
    id: Uuid,
    kind: &'static str,
    state: &'static str,
    next: Option<String>,
    payload: String,
    attempts: Vec<AttemptLine>,
    can_resend: bool,
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
    let timestamp = chrono::Utc::now().timestamp();
    // Signed with the current secret (a rotation's old one aside).
    let signature = state.sealer.key(&scenario.signing_secret).ok()?.sign(
        &id.to_string(),
        timestamp,
        payload.as_bytes(),
    );
    Some(format!(
        "curl -sS -X POST {} -H 'content-type: application/json' -H {} -H {} -H {} -H {} --data-binary {}",
        shell_quote(url),
        shell_quote(&format!("user-agent: callhook/{}", env!("CARGO_PKG_VERSION"))),
        shell_quote(&format!("webhook-id: {id}")),
        shell_quote(&format!("webhook-timestamp: {timestamp}")),
        shell_quote(&format!("webhook-signature: {signature}")),
        shell_quote(payload),
    ))
}

#[derive(Template)]
#[template(path = "console/call.html")]
struct CallPage {
    lang: Lang,
    csrf: String,
    actor: String,
    call_id: String,
    fields: Vec<(String, String)>,
    deliveries: Vec<DeliveryBlock>,
}

pub(super) async fn call_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, crate::ApiError> {
    let Some(call) = log::call_json(&state.pool, &id).await? else {
        return Ok((StatusCode::NOT_FOUND, lang.t("not_found")).into_response());
    };
    let fields = call
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = log::of_call(&state.pool, &id).await?;
    let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
    let attempts = log::attempts(&state.pool, &ids).await?;
    let scenario = match rows.iter().find_map(|d| d.scenario_id) {
        Some(sid) => scenarios::get(&state.pool, sid).await.ok(),
        None => None,
    };
    let deliveries = rows
        .into_iter()
        .map(|d| DeliveryBlock {
            curl: scenario
                .as_ref()
                .and_then(|sc| as_curl(&state, sc, d.kind, d.id, &d.payload)),
            id: d.id,
            kind: d.kind.as_str(),
            state: d.state.as_str(),
            next: d
                .next_attempt_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            payload: d.payload.clone(),
            can_resend: d.state.is_final(),
            attempts: attempts
                .iter()
                .filter(|a| a.delivery_id == Some(d.id))
                .map(|a| AttemptLine {
                    attempt: a.attempt,
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
        .collect();
    Ok(page(
        render(&CallPage {
            lang,
            csrf: key(&state).csrf(&s.session),
            actor: s.actor.0,
            call_id: id,
            fields,
            deliveries,
        }),
        vec![s.renewed],
    ))
}

pub(super) async fn resend(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, crate::ApiError> {
    let lang = lang(&q, &headers);
    let s = match signed_post(&state, &headers, lang, &form.csrf) {
        Ok(s) => s,
        Err(r) => return Ok(r.into_response()),
    };
    let back = match log::retry(&state.pool, id).await? {
        Retried::Requeued(row) => {
            audit::record(
                &state,
                &s.actor,
                Action::DeliveryRetry,
                row.scenario_id,
                serde_json::json!({"delivery_id": id, "call_id": row.call_id, "kind": row.kind, "via": "console"}),
            )
            .await;
            row.call_id
        }
        Retried::AlreadyPending => log::get(&state.pool, id).await?.call_id,
    };
    let to = match back {
        Some(call) => format!(
            "/console/calls/{}?lang={}",
            form_urlencoded::byte_serialize(call.as_bytes()).collect::<String>(),
            lang.code()
        ),
        None => format!("/console/deliveries?lang={}", lang.code()),
    };
    let mut r = Redirect::to(&to).into_response();
    if let Ok(v) = HeaderValue::from_str(&s.renewed) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

#[derive(Template)]
#[template(path = "console/recover.html")]
struct RecoverPage {
    lang: Lang,
    csrf: String,
    actor: String,
    scenarios: Vec<(String, String)>,
    scenario_id: String,
    since: String,
    /// Counted, waiting for the confirmation.
    count: Option<i64>,
    /// Requeued.
    done: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RecoverForm {
    csrf: String,
    scenario_id: Uuid,
    since: String,
    #[serde(default)]
    confirm: String,
}

async fn recover_page_for(
    state: &AppState,
    s: &super::Signed,
    lang: Lang,
    form: Option<&RecoverForm>,
    count: Option<i64>,
    done: Option<u64>,
) -> Result<Response, crate::ApiError> {
    let scenarios = scenarios::list(&state.pool)
        .await?
        .into_iter()
        .map(|sc| (sc.id.to_string(), sc.name))
        .collect();
    let default_since = (chrono::Utc::now() - chrono::Duration::hours(24))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    Ok(page(
        render(&RecoverPage {
            lang,
            csrf: key(state).csrf(&s.session),
            actor: s.actor.0.clone(),
            scenarios,
            scenario_id: form.map(|f| f.scenario_id.to_string()).unwrap_or_default(),
            since: form.map_or(default_since, |f| f.since.clone()),
            count,
            done,
        }),
        vec![s.renewed.clone()],
    ))
}

/// "Resend everything failed for this scenario since T": the form.
pub(super) async fn recover_page(
    State(state): State<AppState>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, crate::ApiError> {
    recover_page_for(&state, &s, lang, None, None, None).await
}

/// The count first; with `confirm=yes`, the requeue.
pub(super) async fn recover(
    State(state): State<AppState>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
    Form(form): Form<RecoverForm>,
) -> Result<Response, crate::ApiError> {
    let lang = lang(&q, &headers);
    let s = match signed_post(&state, &headers, lang, &form.csrf) {
        Ok(s) => s,
        Err(r) => return Ok(r.into_response()),
    };
    let Ok(since) = chrono::NaiveDateTime::parse_from_str(&form.since, "%Y-%m-%dT%H:%M") else {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            "since must be a date and time",
        )
            .into_response());
    };
    let filter = DeliveryFilter {
        scenario_id: Some(form.scenario_id),
        state: Some(DeliveryState::Failed),
        since: Some(since.and_utc()),
        ..DeliveryFilter::default()
    };
    if form.confirm != "yes" {
        let n = log::count_final(&state.pool, &filter).await?;
        return recover_page_for(&state, &s, lang, Some(&form), Some(n), None).await;
    }
    let n = log::retry_matching(&state.pool, &filter).await?;
    audit::record(
        &state,
        &s.actor,
        Action::DeliveriesRetry,
        Some(form.scenario_id),
        serde_json::json!({"requeued": n, "state": "failed", "since": filter.since, "via": "console"}),
    )
    .await;
    recover_page_for(&state, &s, lang, Some(&form), None, Some(n)).await
}
