//! The console's errors, answered to a browser in HTML: a page, or for an
//! htmx request the fragment it swaps in, with the status, what is wrong
//! and the field when there is one (kanidm's `HtmxError` pattern). The API's
//! errors ([`ApiError`]) are turned into these; they never reach a browser
//! as JSON.

use askama::Template;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use callhook_core::FieldError;
use callhook_store::StoreError;

use super::i18n::{Lang, ShownError};
use super::{harden, lang, LangQuery};
use crate::ApiError;

tokio::task_local! {
    /// The language and kind of the request being answered, for its error.
    static ASKED: Asked;
}

#[derive(Clone, Copy)]
struct Asked {
    lang: Lang,
    htmx: bool,
}

/// Answers the request in `f` with its errors in the language it asked for.
pub(super) async fn in_request_language(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let q = axum::extract::Query::<LangQuery>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or(LangQuery { lang: None });
    let asked = Asked {
        lang: lang(&q, req.headers()),
        htmx: is_htmx(req.headers()),
    };
    ASKED.scope(asked, next.run(req)).await
}

/// A request sent by htmx (it swaps the answer into the page).
pub(super) fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// An error for a browser.
#[derive(Debug)]
pub(super) struct ConsoleError(ApiError);

impl ConsoleError {
    pub(super) fn not_found(what: impl Into<String>) -> Self {
        Self(ApiError::not_found(what))
    }

    /// A template that did not render: a 500, logged.
    pub(super) fn template(e: &askama::Error) -> Self {
        tracing::error!(error = %e, "console template failed");
        Self(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "template",
            "the page could not be rendered; see the server's log",
        ))
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        Self(e.into())
    }
}

impl From<FieldError> for ConsoleError {
    fn from(e: FieldError) -> Self {
        Self(e.into())
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    lang: Lang,
    heading: String,
    e: ShownError,
}

#[derive(Template)]
#[template(path = "console/error_fragment.html")]
struct ErrorFragment {
    lang: Lang,
    e: ShownError,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let e = self.0;
        let asked = ASKED.try_with(|a| *a).unwrap_or(Asked {
            lang: Lang::En,
            htmx: false,
        });
        let lang = asked.lang;
        let shown = lang.error(e.field.as_deref(), e.code, &e.message);
        let body = if asked.htmx {
            ErrorFragment { lang, e: shown }.render()
        } else {
            let heading = format!("{} {}", lang.labels().error, e.status.as_u16());
            ErrorPage {
                lang,
                heading,
                e: shown,
            }
            .render()
        };
        let body = body.unwrap_or_else(|t| {
            tracing::error!(error = %t, "console error page failed");
            "error".to_owned()
        });
        let mut r = (e.status, Html(body)).into_response();
        harden(r.headers_mut());
        r
    }
}
