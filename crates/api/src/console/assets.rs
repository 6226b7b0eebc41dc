//! The console's one script, htmx, compiled in (see `assets/README.md`).
//! Served with a versioned name, so browsers may keep it for a year.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Where pages load htmx from.
pub(super) const HTMX_PATH: &str = "/console/assets/htmx-2.0.11.min.js";

static HTMX: &[u8] = include_bytes!("../../assets/htmx-2.0.11.min.js");

pub(super) async fn htmx() -> Response {
    let mut r = HTMX.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}
