//! The operator's console: server-rendered pages under `/console`, compiled
//! into the binary (askama templates, no JavaScript, no CDN). It calls the
//! same store functions as the REST API.
//!
//! Sign-in takes the admin token once and keeps a signed session cookie
//! (HttpOnly, SameSite=Strict, idle expiry; see [`session`]); every form
//! carries a CSRF token; every page is sent with a strict
//! Content-Security-Policy. The ingest token opens nothing here.

pub mod i18n;
pub mod session;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use callhook_core::{DeliveryKind, DeliveryState};
use callhook_store::log::{DeliveryFilter, Retried};
use callhook_store::{health, log, scenarios};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::Actor;
use crate::routes::audit::{self, Action};
use crate::AppState;
use i18n::Lang;
use session::{SessionKey, COOKIE};

const LOGIN_CSRF: &str = "callhook_login_csrf";

/// The console's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(scenarios_page))
        .route("/console/health", get(health_page))
        .route("/console/deliveries", get(deliveries_page))
        .route("/console/calls/{id}", get(call_page))
        .route("/console/deliveries/{id}/retry", post(resend))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route(
            "/console/scenarios/{id}/endpoints/{kind}/{action}",
            post(switch_endpoint),
        )
}

#[derive(Debug, Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

fn lang(q: &LangQuery, headers: &HeaderMap) -> Lang {
    Lang::of(q.lang.as_deref(), headers)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn key(state: &AppState) -> SessionKey {
    SessionKey::derive(&state.tokens.admin)
}

/// `; Secure` when the console is reached over https (through a proxy).
fn secure(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    if https {
        "; Secure"
    } else {
        ""
    }
}

/// A page, with the console's security headers.
fn page(body: String, cookies: Vec<String>) -> Response {
    let mut r = (StatusCode::OK, axum::response::Html(body)).into_response();
    harden(r.headers_mut());
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn harden(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn render(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "console template failed");
        "template error".to_owned()
    })
}

/// The signed-in operator and the renewed session cookie, or a redirect
/// to the sign-in page.
struct Signed {
    actor: Actor,
    session: String,
    renewed: String,
}

fn signed(state: &AppState, headers: &HeaderMap, lang: Lang) -> Result<Signed, Redirect> {
    let k = key(state);
    let to_login = || Redirect::to(&format!("/console/login?lang={}", lang.code()));
    let value = cookie(headers, COOKIE).ok_or_else(to_login)?;
    let name = k.verify(value, now()).ok_or_else(to_login)?;
    let session = k.issue(&name, now());
    Ok(Signed {
        renewed: format!(
            "{COOKIE}={session}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
            session::IDLE_SECS,
            secure(headers)
        ),
        actor: Actor(name),
        session: value.to_owned(),
    })
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    lang: Lang,
    csrf: String,
    error: Option<&'a str>,
}

async fn login_page(Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    let lang = lang(&q, &headers);
    let mut token = [0u8; 16];
    rand::rng().fill_bytes(&mut token);
    let csrf: String = token.iter().map(|b| format!("{b:02x}")).collect();
    page(
        render(&LoginPage {
            lang,
            csrf: csrf.clone(),
            error: None,
        }),
        vec![
            format!(
                "{LOGIN_CSRF}={csrf}; Path=/console/login; HttpOnly; SameSite=Strict{}",
                secure(&headers)
            ),
            format!(
                "callhook_lang={}; Path=/console; SameSite=Strict",
                lang.code()
            ),
        ],
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    csrf: String,
}

async fn login(
    State(state): State<AppState>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = lang(&q, &headers);
    let expected = cookie(&headers, LOGIN_CSRF).unwrap_or("");
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return (
            StatusCode::FORBIDDEN,
            "the form is stale or forged: reload the sign-in page",
        )
            .into_response();
    }
    let presented = form.token.trim();
    let who = state.tokens.admin.iter().find(|t| {
        bool::from(
            presented
                .as_bytes()
                .ct_eq(t.token.expose_secret().as_bytes()),
        )
    });
    let Some(who) = who else {
        tracing::warn!("console sign-in with a wrong token");
        let mut r = page(
            render(&LoginPage {
                lang,
                csrf: form.csrf,
                error: Some(lang.t("wrong_token")),
            }),
            vec![],
        );
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    let session = key(&state).issue(&who.name, now());
    tracing::info!(actor = %who.name, "console sign-in");
    let mut r = Redirect::to(&format!("/console?lang={}", lang.code())).into_response();
    harden(r.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={session}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session::IDLE_SECS,
        secure(&headers)
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let lang = lang(&q, &headers);
    let s = match signed(&state, &headers, lang) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    if !key(&state).csrf_ok(&s.session, &form.csrf) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response();
    }
    let mut r = Redirect::to(&format!("/console/login?lang={}", lang.code())).into_response();
    harden(r.headers_mut());
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "callhook_session=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

/// A scenario row of the list.
struct ScenarioRow {
    id: Uuid,
    name: String,
    numbers: String,
    during_url: Option<String>,
    after_url: Option<String>,
    during_state: &'static str,
    after_state: &'static str,
    delivered_24h: i64,
    failed_24h: i64,
    last_error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/scenarios.html")]
struct ScenariosPage {
    lang: Lang,
    csrf: String,
    actor: String,
    rows: Vec<ScenarioRow>,
}

async fn scenarios_page(
    State(state): State<AppState>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Result<Response, crate::ApiError> {
    let lang = lang(&q, &headers);
    let s = match signed(&state, &headers, lang) {
        Ok(s) => s,
        Err(r) => return Ok(r.into_response()),
    };
    let all = scenarios::list(&state.pool).await?;
    let ids: Vec<Uuid> = all.iter().map(|s| s.id).collect();
    let endpoints = health::of_scenarios(&state.pool, &ids).await?;
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let summaries = log::summaries_since(&state.pool, since).await?;
    let state_of = |id: Uuid, kind: DeliveryKind| {
        endpoints
            .iter()
            .find(|e| e.scenario_id == id && e.kind == kind)
            .map_or("healthy", |e| e.state.as_str())
    };
    let rows = all
        .into_iter()
        .map(|sc| {
            let sum = summaries.iter().find(|x| x.scenario_id == sc.id);
            ScenarioRow {
                id: sc.id,
                during_state: state_of(sc.id, DeliveryKind::DuringCall),
                after_state: state_of(sc.id, DeliveryKind::AfterCall),
                name: sc.name,
                numbers: sc.numbers.join(", "),
                during_url: sc.during_call_url,
                after_url: sc.after_call_url,
                delivered_24h: sum.map_or(0, |x| x.delivered),
                failed_24h: sum.map_or(0, |x| x.failed),
                last_error: sum.and_then(|x| x.last_error.clone()),
            }
        })
        .collect();
    Ok(page(
        render(&ScenariosPage {
            lang,
            csrf: key(&state).csrf(&s.session),
            actor: s.actor.0,
            rows,
        }),
        vec![s.renewed],
    ))
}

/// An endpoint row of the health page.
struct EndpointRow {
    scenario_id: Uuid,
    scenario_name: String,
    kind: &'static str,
    url: Option<String>,
    state: &'static str,
    since: String,
    last_error: Option<String>,
    waiting: i64,
    /// `pause` or `enable`: what its button does.
    action: &'static str,
}

#[derive(Template)]
#[template(path = "console/health.html")]
struct HealthPage {
    lang: Lang,
    csrf: String,
    actor: String,
    rows: Vec<EndpointRow>,
}

async fn health_page(
    State(state): State<AppState>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Result<Response, crate::ApiError> {
    let lang = lang(&q, &headers);
    let s = match signed(&state, &headers, lang) {
        Ok(s) => s,
        Err(r) => return Ok(r.into_response()),
    };
    let rows = health::list(&state.pool, None)
        .await?
        .into_iter()
        .map(|e| EndpointRow {
            scenario_id: e.scenario_id,
            scenario_name: e.scenario_name,
            kind: e.kind.as_str(),
            url: e.url,
            state: e.state.as_str(),
            since: e.since.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            last_error: e.last_error,
            waiting: e.deliveries_waiting,
            action: if e.state.holds_deliveries() {
                "enable"
            } else {
                "pause"
            },
        })
        .collect();
    Ok(page(
        render(&HealthPage {
            lang,
            csrf: key(&state).csrf(&s.session),
            actor: s.actor.0,
            rows,
        }),
        vec![s.renewed],
    ))
}

async fn switch_endpoint(
    State(state): State<AppState>,
    Path((id, kind, action)): Path<(Uuid, String, String)>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, crate::ApiError> {
    let lang = lang(&q, &headers);
    let s = match signed(&state, &headers, lang) {
        Ok(s) => s,
        Err(r) => return Ok(r.into_response()),
    };
    if !key(&state).csrf_ok(&s.session, &form.csrf) {
        return Ok((StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response());
    }
    let kind = match kind.parse::<DeliveryKind>() {
        Ok(k @ (DeliveryKind::DuringCall | DeliveryKind::AfterCall)) => k,
        _ => return Ok((StatusCode::NOT_FOUND, "no such endpoint").into_response()),
    };
    let (switched, audited) = match action.as_str() {
        "pause" => (
            health::pause(&state.pool, id, kind, &state.settings.health).await?,
            Action::EndpointPause,
        ),
        "enable" => (
            health::enable(&state.pool, id, kind, &state.settings.health).await?,
            Action::EndpointEnable,
        ),
        _ => return Ok((StatusCode::NOT_FOUND, "no such action").into_response()),
    };
    if let Some(t) = switched.transition {
        callhook_dispatch::transitions::announce(
            id,
            kind,
            t,
            switched.endpoint.last_error.as_deref(),
        );
    }
    audit::record(
        &state,
        &s.actor,
        audited,
        Some(id),
        serde_json::json!({"kind": kind, "transition": switched.transition.map(|t| t.to.as_str()),
                           "deliveries": switched.deliveries, "via": "console"}),
    )
    .await;
    let mut r = Redirect::to(&format!("/console/health?lang={}", lang.code())).into_response();
    if let Ok(v) = HeaderValue::from_str(&s.renewed) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// The deliveries page's filters and cursor.
#[derive(Debug, Deserialize)]
struct DeliveriesQuery {
    lang: Option<String>,
    call_id: Option<String>,
    state: Option<String>,
    kind: Option<String>,
    after: Option<String>,
}

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

/// Rows a page shows.
const PAGE: usize = 50;

async fn deliveries_page(
    State(state): State<AppState>,
    Query(q): Query<DeliveriesQuery>,
    headers: HeaderMap,
) -> Result<Response, crate::ApiError> {
    let lang = Lang::of(q.lang.as_deref(), &headers);
    let s = match signed(&state, &headers, lang) {
        Ok(s) => s,
        Err(r) => return Ok(r.into_response()),
    };
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

async fn call_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Result<Response, crate::ApiError> {
    let lang = lang(&q, &headers);
    let s = match signed(&state, &headers, lang) {
        Ok(s) => s,
        Err(r) => return Ok(r.into_response()),
    };
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
    let deliveries = rows
        .into_iter()
        .map(|d| DeliveryBlock {
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

async fn resend(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, crate::ApiError> {
    let lang = lang(&q, &headers);
    let s = match signed(&state, &headers, lang) {
        Ok(s) => s,
        Err(r) => return Ok(r.into_response()),
    };
    if !key(&state).csrf_ok(&s.session, &form.csrf) {
        return Ok((StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response());
    }
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
