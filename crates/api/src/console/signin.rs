//! Signing in with the admin token, and out.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::i18n::Lang;
use super::session;
use super::urls::Page;
use super::{
    cookies, harden, key, lang, now, page, render, ConsoleError, CsrfForm, LangQuery, SignedForm,
};
use crate::throttle::ConnectInfoPeer;
use crate::{ApiError, AppState};

/// The most a sign-in form may weigh: a token and a CSRF token. Every other
/// console form is read only after its session is checked.
pub(super) const MAX_LOGIN_BODY: usize = 4 * 1024;

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    lang: Lang,
    csrf: String,
    error: Option<&'a str>,
}

pub(super) async fn login_page(
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    let lang = lang(&q, &headers);
    let mut token = [0u8; 16];
    rand::rng().fill_bytes(&mut token);
    let csrf = hex::encode(token);
    Ok(page(
        render(&LoginPage {
            lang,
            csrf: csrf.clone(),
            error: None,
        })?,
        vec![cookies::login_csrf(csrf, &headers), cookies::lang(lang)],
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    token: String,
    csrf: String,
}

/// Signs in with the admin token. Failures are counted per client address
/// ([`crate::throttle`]): past its quota the address gets `429` (an HTML
/// page) until its quota refills, the right token included.
pub(super) async fn login(
    State(state): State<AppState>,
    Query(q): Query<LangQuery>,
    ConnectInfoPeer(peer): ConnectInfoPeer,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ConsoleError> {
    let lang = lang(&q, &headers);
    let client = state.throttle.client(peer, &headers);
    if let Some(wait) = state.throttle.locked_out(client) {
        return Err(ApiError::too_many_failures(wait).into());
    }
    let expected = cookies::get(&headers, cookies::LOGIN_CSRF).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "the form is stale or forged: reload the sign-in page",
        );
        return Err(e.into());
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
        tracing::warn!(%client, "console sign-in with a wrong token");
        if let Some(wait) = state.throttle.failed(client) {
            return Err(ApiError::too_many_failures(wait).into());
        }
        let mut r = page(
            render(&LoginPage {
                lang,
                csrf: form.csrf,
                error: Some(lang.labels().wrong_token),
            })?,
            vec![],
        );
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(r);
    };
    let session = key(&state).issue(&session::Session::new(&who.name, now()), now());
    tracing::info!(actor = %who.name, %client, "console sign-in");
    let mut r = Redirect::to(&Page::Scenarios.href(lang)).into_response();
    harden(r.headers_mut());
    cookies::set(r.headers_mut(), [&cookies::session(session, &headers)]);
    Ok(r)
}

/// Signs out: the session ends on every process (remembered in Postgres
/// until its cookie would have expired anyway), and the browser's cookie is
/// cleared.
pub(super) async fn logout(
    State(state): State<AppState>,
    SignedForm { lang, s, .. }: SignedForm<CsrfForm>,
) -> Result<Response, ConsoleError> {
    let lifetime = chrono::Duration::from_std(state.settings.console_session_max)
        .unwrap_or(chrono::Duration::MAX);
    let started = chrono::DateTime::from_timestamp(s.session.started, 0).unwrap_or_default();
    callhook_store::sessions::sign_out(&state.pool, &s.session.sid, started + lifetime).await?;
    tracing::info!(actor = %s.actor.0, "console sign-out");
    let mut r = Redirect::to(&Page::Login.href(lang)).into_response();
    harden(r.headers_mut());
    cookies::set(r.headers_mut(), [&cookies::session_cleared()]);
    Ok(r)
}
