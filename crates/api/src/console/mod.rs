//! The operator's console: server-rendered pages under `/console`, compiled
//! into the binary (askama templates, no CDN). Pages read without
//! JavaScript; htmx (compiled in, [`assets`]) adds live updates. It calls
//! the same store functions as the REST API.
//!
//! Sign-in takes the admin token once and keeps a signed session cookie
//! (HttpOnly, SameSite=Strict, idle expiry; see [`session`]); every form
//! carries a CSRF token; every page is sent with a strict
//! Content-Security-Policy. The ingest token opens nothing here.

mod assets;
mod call;
mod deliveries;
pub mod i18n;
mod overview;
mod recover;
mod scenario_form;
pub mod session;
mod time;

use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::auth::Actor;
use crate::AppState;
use i18n::Lang;
use session::{SessionKey, COOKIE};

const LOGIN_CSRF: &str = "callhook_login_csrf";

/// The console's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(overview::scenarios_page))
        .route("/console/health", get(overview::health_page))
        .route(assets::HTMX_PATH, get(assets::htmx))
        .route("/console/deliveries", get(deliveries::deliveries_page))
        .route("/console/deliveries/live", get(deliveries::deliveries_live))
        .route("/console/calls/{id}", get(call::call_page))
        .route("/console/deliveries/{id}/retry", post(call::resend))
        .route(
            "/console/recover",
            get(recover::recover_page).post(recover::recover),
        )
        .route("/console/scenarios/preview", post(scenario_form::preview))
        .route(
            "/console/scenarios/new",
            get(scenario_form::new_page).post(scenario_form::create),
        )
        .route(
            "/console/scenarios/{id}",
            get(scenario_form::edit_page).post(scenario_form::save),
        )
        .route(
            "/console/scenarios/{id}/secret/rotate",
            post(scenario_form::rotate),
        )
        .route(
            "/console/scenarios/{id}/delete",
            post(scenario_form::delete),
        )
        .route("/console/scenarios/{id}/pool", get(overview::pool_page))
        .route(
            "/console/scenarios/{id}/test",
            post(scenario_form::test_send),
        )
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route(
            "/console/scenarios/{id}/endpoints/{kind}/{action}",
            post(overview::switch_endpoint),
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
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
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
    session: session::Session,
    renewed: String,
}

/// A page asked for by a signed-in operator: its language (`?lang=` or
/// Accept-Language) and the session. Rejects with the redirect to the
/// sign-in page.
struct SignedPage {
    lang: Lang,
    s: Signed,
}

impl FromRequestParts<AppState> for SignedPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Query(q) = Query::<LangQuery>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let lang = lang(&q, &parts.headers);
        let s = signed(state, &parts.headers, lang).map_err(|to_login| {
            // htmx follows no redirect into the page: it is told to go there.
            if parts.headers.contains_key("hx-request") {
                let mut r = StatusCode::UNAUTHORIZED.into_response();
                if let Ok(v) =
                    HeaderValue::from_str(&format!("/console/login?lang={}", lang.code()))
                {
                    r.headers_mut().insert("hx-redirect", v);
                }
                r
            } else {
                to_login.into_response()
            }
        })?;
        Ok(Self { lang, s })
    }
}

fn signed(state: &AppState, headers: &HeaderMap, lang: Lang) -> Result<Signed, Redirect> {
    let k = key(state);
    let to_login = || Redirect::to(&format!("/console/login?lang={}", lang.code()));
    let value = cookie(headers, COOKIE).ok_or_else(to_login)?;
    let current = k.verify(value, now()).ok_or_else(to_login)?;
    let renewed = k.issue(&current, now());
    Ok(Signed {
        renewed: format!(
            "{COOKIE}={renewed}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
            session::IDLE_SECS,
            secure(headers)
        ),
        actor: Actor(current.name.clone()),
        session: current,
    })
}

/// Why a form post was not let through.
enum Refused {
    /// No valid session: to the sign-in page.
    SignIn(Redirect),
    /// The form's CSRF token is missing or wrong.
    Forged,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn(r) => r.into_response(),
            Self::Forged => (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response(),
        }
    }
}

/// A form post from a signed-in operator, its CSRF token checked: the
/// page's language, the session and the form. Rejects with the redirect to
/// the sign-in page, a `403` for a missing or wrong CSRF token, or the
/// form's own rejection.
struct SignedForm<T> {
    lang: Lang,
    s: Signed,
    form: T,
}

/// A console form: every one carries the CSRF token.
trait CsrfField {
    fn csrf(&self) -> &str;
}

impl<T> axum::extract::FromRequest<AppState> for SignedForm<T>
where
    T: serde::de::DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Query(q) = Query::<LangQuery>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let lang = lang(&q, &parts.headers);
        let headers = parts.headers.clone();
        let Form(form) =
            Form::<T>::from_request(axum::extract::Request::from_parts(parts, body), state)
                .await
                .map_err(IntoResponse::into_response)?;
        let s =
            signed_post(state, &headers, lang, form.csrf()).map_err(IntoResponse::into_response)?;
        Ok(Self { lang, s, form })
    }
}

impl CsrfField for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The signed-in operator of a form post, its CSRF token checked.
fn signed_post(
    state: &AppState,
    headers: &HeaderMap,
    lang: Lang,
    csrf: &str,
) -> Result<Signed, Refused> {
    let s = signed(state, headers, lang).map_err(Refused::SignIn)?;
    if !key(state).csrf_ok(&s.session, csrf) {
        return Err(Refused::Forged);
    }
    Ok(s)
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
    let session = key(&state).issue(&session::Session::new(&who.name), now());
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

async fn logout(SignedForm { lang, .. }: SignedForm<CsrfForm>) -> Response {
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

/// A redirect (after a post) that renews the session cookie.
fn redirect_with(to: &str, cookie: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
