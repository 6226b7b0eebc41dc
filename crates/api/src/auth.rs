//! Bearer-token checks for the admin and ingest APIs.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// A bearer token and the name the audit log records for it.
#[derive(Clone)]
pub struct NamedToken {
    pub name: String,
    pub token: SecretString,
}

/// The tokens a route group takes (several, so one can be rotated without
/// downtime).
#[derive(Clone)]
pub(crate) struct RequiredToken(pub std::sync::Arc<Vec<NamedToken>>);

/// Who made a request: the name of the token it carried.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

/// Lets the request through only with `Authorization: Bearer <token>` of one
/// of the group's tokens, and tells the handler whose (an [`Actor`]
/// extension); each comparison takes the same time wherever the tokens
/// differ, and every token is compared.
pub(crate) async fn require_bearer(
    State(tokens): State<RequiredToken>,
    mut request: Request,
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
    let matched = presented.and_then(|p| {
        let mut found = None;
        for t in tokens.0.iter() {
            if bool::from(p.as_bytes().ct_eq(t.token.expose_secret().as_bytes())) && found.is_none()
            {
                found = Some(t.name.clone());
            }
        }
        found
    });
    match (presented, matched) {
        (Some(_), Some(name)) => {
            request.extensions_mut().insert(Actor(name));
            Ok(next.run(request).await)
        }
        (Some(_), None) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong bearer token",
        )),
        (None, _) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        )),
    }
}
