//! The operator's console: server-rendered pages under `/console`, compiled
//! into the binary (askama templates, no CDN). Pages read without
//! JavaScript; htmx (compiled in, [`assets`]) adds live updates. Every
//! change goes through the operations layer (`crate::ops`), as the REST
//! API's do; errors are answered in HTML ([`error`]).
//!
//! Sign-in takes the admin token once and keeps a signed session cookie
//! (HttpOnly, SameSite=Strict, idle expiry; see [`session`]); every form
//! carries a CSRF token; every page is sent with a strict
//! Content-Security-Policy. The ingest token opens nothing here.

mod assets;
mod call;
mod cookies;
mod deliveries;
mod error;
pub(crate) mod i18n;
mod overview;
mod recover;
mod scenario_form;
pub(crate) mod session;
mod signed;
mod signin;
mod time;
mod timeline;
mod urls;

use askama::Template;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use cookie::Cookie;
use serde::Deserialize;
use tower_http::limit::RequestBodyLimitLayer;

use crate::AppState;
use error::ConsoleError;
use i18n::Lang;
use session::SessionKey;
use signed::{CsrfField, Signed, SignedForm, SignedPage};

/// The console's routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
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
            "/console/scenarios/{id}/filter-preview",
            post(scenario_form::dry_run_fragment),
        )
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
        .route(
            "/console/login",
            get(signin::login_page)
                .post(signin::login)
                .layer(RequestBodyLimitLayer::new(signin::MAX_LOGIN_BODY)),
        )
        .route("/console/logout", post(signin::logout))
        .route(
            "/console/scenarios/{id}/endpoints/{kind}/limits",
            post(overview::set_limits),
        )
        .route(
            "/console/scenarios/{id}/endpoints/{kind}/send-now",
            post(overview::send_now),
        )
        .route(
            "/console/scenarios/{id}/endpoints/{kind}/{action}",
            post(overview::switch_endpoint),
        )
        .route_layer(axum::middleware::from_fn(error::in_request_language))
}

#[derive(Debug, Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

fn lang(q: &LangQuery, headers: &HeaderMap) -> Lang {
    Lang::of(q.lang.as_deref(), headers)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn key(state: &AppState) -> SessionKey {
    SessionKey::derive(&state.tokens.admin)
}

/// A page, with the console's security headers and `cookies`.
fn page(body: String, cookies: Vec<Cookie<'static>>) -> Response {
    let mut r = (StatusCode::OK, axum::response::Html(body)).into_response();
    harden(r.headers_mut());
    cookies::set(r.headers_mut(), &cookies);
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

/// A page's HTML; a template that fails is a 500, logged.
fn render(t: &impl Template) -> Result<String, ConsoleError> {
    t.render().map_err(|e| ConsoleError::template(&e))
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// A redirect (after a post) that renews the session cookie.
fn redirect_with(to: &str, cookie: &Cookie<'_>) -> Response {
    let mut r = Redirect::to(to).into_response();
    cookies::set(r.headers_mut(), [cookie]);
    r
}
