//! Bearer-token checks for the admin and ingest APIs.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::throttle::{peer_of, Throttle};
use crate::ApiError;

/// A bearer token and the name the audit log records for it.
#[derive(Clone)]
pub struct NamedToken {
    pub name: String,
    pub token: SecretString,
}

/// The tokens a route group takes (several, so one can be rotated without
/// downtime), which API they open (for the log), and the throttle that
/// slows guessing them.
#[derive(Clone)]
pub(crate) struct RequiredToken {
    pub(crate) tokens: std::sync::Arc<Vec<NamedToken>>,
    pub(crate) api: &'static str,
    pub(crate) throttle: std::sync::Arc<Throttle>,
}

/// Who made a request: the name of the token it carried.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

/// Lets the request through only with `Authorization: Bearer <token>` of one
/// of the group's tokens, and tells the handler whose (an [`Actor`]
/// extension); each comparison takes the same time wherever the tokens
/// differ, and every token is compared. Wrong tokens are counted per client
/// address ([`Throttle`]): past its quota an address gets `429`.
pub(crate) async fn require_bearer(
    State(required): State<RequiredToken>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = required
        .throttle
        .client(peer_of(request.extensions()), request.headers());
    if let Some(wait) = required.throttle.locked_out(client) {
        return Err(ApiError::too_many_failures(wait));
    }
    let tokens = &required.tokens;
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
        for t in tokens.iter() {
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
        (Some(_), None) => {
            tracing::warn!(%client, api = required.api, "wrong bearer token");
            if let Some(wait) = required.throttle.failed(client) {
                return Err(ApiError::too_many_failures(wait));
            }
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong bearer token",
            ))
        }
        (None, _) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        )),
    }
}
