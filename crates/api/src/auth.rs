//! Bearer-token checks for the admin and ingest APIs.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// Which token a route group wants.
#[derive(Clone)]
pub struct RequiredToken(pub SecretString);

/// Lets the request through only with `Authorization: Bearer <token>`; the
/// comparison takes the same time wherever the tokens differ.
pub async fn require_bearer(
    State(token): State<RequiredToken>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let expected = token.0.expose_secret().as_bytes();
    match presented {
        Some(p) if bool::from(p.as_bytes().ct_eq(expected)) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong bearer token",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        )),
    }
}
