//! One error type for every API answer that is not a success, with a stable
//! JSON body: `{"error": {"code", "message", "field"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use callhook_core::FieldError;
use callhook_store::calls::IngestError;
use callhook_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for `Retry-After` (a `503` says 5 when this is unset).
    pub(crate) retry_after: Option<u64>,
    /// Other fields' errors found with this one (a form shows them all;
    /// the API's answer names the first field only, as it always has).
    pub(crate) more: Vec<FieldError>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_url`.
    pub code: String,
    /// What is wrong and what to do, for a human.
    pub message: String,
    /// The JSON name of the offending input, when there is one.
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            more: Vec::new(),
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn unprocessable(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
    }

    /// `503 database_unavailable` (with `Retry-After`): nothing was stored.
    fn database_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable; nothing was stored, retry shortly",
        )
    }

    /// `429` after too many wrong tokens or sign-ins from one address; the
    /// answer's `Retry-After` is `wait`.
    pub(crate) fn too_many_failures(wait: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            format!(
                "too many wrong tokens from this address; try again in {} s",
                wait.as_secs().max(1)
            ),
        );
        e.retry_after = Some(wait.as_secs().max(1));
        e
    }

    pub fn internal(e: &dyn std::error::Error) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server's log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(5));
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self::unprocessable(e.field, e.code, e.message)
    }
}

impl From<Vec<FieldError>> for ApiError {
    /// The first field's error, carrying the others.
    fn from(mut errors: Vec<FieldError>) -> Self {
        let first = errors.remove(0);
        let mut e = Self::from(first);
        e.more = errors;
        e
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found("not found"),
            StoreError::NumberTaken {
                number,
                scenario_id,
                scenario_name,
            } => Self::new(
                StatusCode::CONFLICT,
                "number_taken",
                format!("number {number} already belongs to scenario {scenario_name:?} ({scenario_id}); remove it there first"),
            )
            .with_field("numbers"),
            StoreError::Unavailable(ref inner) => {
                tracing::warn!(error = %inner, "database unavailable");
                Self::database_unavailable()
            }
            StoreError::Db(ref inner) => Self::internal(inner),
            StoreError::Corrupt(what) => {
                tracing::error!(%what, "damaged stored data");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "damaged_data", what)
            }
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Field(f) => f.into(),
            IngestError::Conflict(m) => {
                Self::new(StatusCode::CONFLICT, "conflict", m).with_field("id")
            }
            IngestError::CallNotFound(m) => {
                Self::new(StatusCode::NOT_FOUND, "call_not_found", m).with_field("id")
            }
            IngestError::Store(s) => s.into(),
            IngestError::DatabaseUnavailable(_) => Self::database_unavailable(),
            IngestError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "this instance is shutting down; nothing was stored, send it again (to another instance)",
            ),
            IngestError::Interrupted => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "interrupted",
                "storing the call was interrupted before it answered; send it again (a repeat is answered as stored before)",
            ),
        }
    }
}
