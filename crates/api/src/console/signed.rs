//! Who may ask: the extractors every console page and form post goes
//! through (a signed-in session; for a post, its CSRF token too).

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use cookie::Cookie;

use super::i18n::Lang;
use super::session::{self, COOKIE};
use super::urls::Page;
use super::{cookies, key, lang, now, ConsoleError, CsrfForm, LangQuery};
use crate::auth::Actor;
use crate::{ApiError, AppState};

/// The signed-in operator and the renewed session cookie, or a redirect
/// to the sign-in page.
pub(super) struct Signed {
    pub(super) actor: Actor,
    pub(super) session: session::Session,
    pub(super) renewed: Cookie<'static>,
}

/// A page asked for by a signed-in operator: its language (`?lang=` or
/// Accept-Language) and the session. Rejects with the redirect to the
/// sign-in page.
pub(super) struct SignedPage {
    pub(super) lang: Lang,
    pub(super) s: Signed,
}

impl FromRequestParts<AppState> for SignedPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Query(q) = Query::<LangQuery>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let lang = lang(&q, &parts.headers);
        let s = signed(state, &parts.headers, lang)
            .await
            .map_err(|refused| {
                let Refused::SignIn(to_login) = refused else {
                    return refused.into_response();
                };
                // htmx follows no redirect into the page: it is told to go there.
                if super::error::is_htmx(&parts.headers) {
                    let mut r = StatusCode::UNAUTHORIZED.into_response();
                    if let Ok(v) = HeaderValue::from_str(&Page::Login.href(lang)) {
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

/// The signed-in operator of a request: a cookie that verifies, within its
/// idle expiry and absolute lifetime, of a session that has not signed out.
pub(super) async fn signed(
    state: &AppState,
    headers: &HeaderMap,
    lang: Lang,
) -> Result<Signed, Refused> {
    let k = key(state);
    let to_login = || Refused::SignIn(Redirect::to(&Page::Login.href(lang)));
    let value = cookies::get(headers, COOKIE).ok_or_else(to_login)?;
    let max = i64::try_from(state.settings.console_session_max.as_secs()).unwrap_or(i64::MAX);
    let current = k.verify(&value, now(), max).ok_or_else(to_login)?;
    match callhook_store::sessions::signed_out(&state.pool, &current.sid).await {
        Ok(false) => {}
        Ok(true) => return Err(to_login()),
        Err(e) => return Err(Refused::Error(ConsoleError::from(e))),
    }
    let renewed = k.issue(&current, now());
    Ok(Signed {
        renewed: cookies::session(renewed, headers),
        actor: Actor(current.name.clone()),
        session: current,
    })
}

/// Why a form post was not let through.
pub(super) enum Refused {
    /// No valid session: to the sign-in page.
    SignIn(Redirect),
    /// The form's CSRF token is missing or wrong.
    Forged,
    /// Whether the session signed out could not be read (the database).
    Error(ConsoleError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn(r) => r.into_response(),
            Self::Forged => ConsoleError::from(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong CSRF token: reload the page and send the form again",
            ))
            .into_response(),
            Self::Error(e) => e.into_response(),
        }
    }
}

/// A form post from a signed-in operator, its CSRF token checked: the
/// page's language, the session and the form. The session is checked
/// before the body is read, so nobody unsigned-in gets a body read. Rejects
/// with the redirect to the sign-in page, a `403` for a missing or wrong
/// CSRF token, or the form's own rejection.
pub(super) struct SignedForm<T> {
    pub(super) lang: Lang,
    pub(super) s: Signed,
    pub(super) form: T,
}

/// A console form: every one carries the CSRF token.
pub(super) trait CsrfField {
    fn csrf(&self) -> &str;
}

impl<T> FromRequest<AppState> for SignedForm<T>
where
    T: serde::de::DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Query(q) = Query::<LangQuery>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let lang = lang(&q, &parts.headers);
        // The session first: before sign-in not a byte of the body is read.
        let s = signed(state, &parts.headers, lang)
            .await
            .map_err(IntoResponse::into_response)?;
        let Form(form) = Form::<T>::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !key(state).csrf_ok(&s.session, form.csrf()) {
            return Err(Refused::Forged.into_response());
        }
        Ok(Self { lang, s, form })
    }
}

impl CsrfField for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}
