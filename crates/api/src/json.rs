//! Reading JSON bodies with errors that name the field: `400` for malformed
//! JSON, `413` past the size limit (refused before the body is read whole),
//! `422` for a wrong, missing or unknown field.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::ApiError;

/// Largest request body accepted.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// A request body that is a JSON object.
pub(crate) struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        JsonObject::from_slice(&read_body(req, MAX_BODY).await?)
    }
}

/// Largest batch request body accepted (`POST /api/v1/calls/batch`).
pub(crate) const MAX_BATCH_BODY: usize = 2 * 1024 * 1024;

/// A JSON object body of up to [`MAX_BATCH_BODY`] bytes.
pub(crate) struct LargeJsonObject(pub JsonObject);

impl<S: Send + Sync> FromRequest<S> for LargeJsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        Ok(LargeJsonObject(JsonObject::from_slice(
            &read_body(req, MAX_BATCH_BODY).await?,
        )?))
    }
}

/// The request body, refused with `413` past `limit` (by its declared length
/// before anything is read, else as soon as the limit is crossed).
async fn read_body(req: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body must be at most {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(Body::new(req.into_body()), limit)
        .await
        .map_err(|e| {
            // Too long is a type somewhere in the error's chain of sources.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut over_limit = false;
            while let Some(c) = cause {
                over_limit |= c.is::<http_body_util::LengthLimitError>();
                cause = c.source();
            }
            if over_limit {
                too_large()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    format!("could not read the request body: {e}"),
                )
            }
        })
}

impl JsonObject {
    /// Parses a whole body: `400` unless it is one JSON object. Pure, so the
    /// fuzz targets call it directly.
    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self, ApiError> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "request body must be a JSON object",
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("malformed JSON: {e}"),
            )),
        }
    }
}

impl JsonObject {
    /// Refuses keys outside `allowed`, naming the first.
    pub(crate) fn only(&self, allowed: impl Fn(&str) -> bool) -> Result<&Self, ApiError> {
        if let Some(key) = self.0.keys().find(|k| !allowed(k)) {
            return Err(ApiError::unprocessable(
                key.as_str(),
                "unknown_field",
                format!("unknown field {key:?}"),
            ));
        }
        Ok(self)
    }

    /// Deserialises into `T`, naming the field that does not fit.
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let value = Value::Object(self.0.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let message = e.inner().to_string();
            let field = field_of(&e.path().to_string(), &message);
            let code = if message.starts_with("missing field") {
                "required"
            } else if message.starts_with("unknown field") {
                "unknown_field"
            } else {
                "invalid_type"
            };
            ApiError::unprocessable(field, code, message)
        })
    }
}

/// The JSON name of the input an error is about: serde reports a missing
/// field at its parent, with the name only in the message.
fn field_of(path: &str, message: &str) -> String {
    // (serde_path_to_error already puts an unknown field's name in the path)
    let named = if message.starts_with("missing field")
        || (path == "." && message.starts_with("unknown field"))
    {
        quoted_name(message)
    } else {
        None
    };
    match (path, named) {
        (".", Some(name)) => name,
        (".", None) => String::new(),
        (path, Some(name)) => format!("{path}.{name}"),
        (path, None) => path.to_owned(),
    }
}

/// The name in serde's "missing field `x`" / "unknown field `x`, expected …".
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// A path parameter; one that does not parse (a malformed UUID) means the
/// resource does not exist: `404` naming the parameter.
pub(crate) struct PathParam<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for PathParam<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no such resource: {e}"),
                )
                .with_field("id")
            })
    }
}

/// Query parameters, with `422` naming the parameter that does not parse.
pub(crate) struct QueryParams<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                let message = e.inner().to_string();
                let field = field_of(&e.path().to_string(), &message);
                ApiError::unprocessable(field, "invalid_query", message)
            })
    }
}
