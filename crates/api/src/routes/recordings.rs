//! Ingest API: a call's recording, reported on its own (a PBX often has the
//! file only after it has reported the end). The rules are
//! `store::calls::recording`'s.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callhook_core::call::{check_text, parse_call_id, MAX_FIELD_LEN};
use callhook_core::FieldError;
use callhook_store::calls::{Recording, RecordingOutcome, RecordingStored};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ErrorBody;
use crate::json::{JsonObject, PathParam};
use crate::{ApiError, AppState};

/// The call's recording: `link`, `file_id`, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordingBody {
    /// The recording's address.
    #[serde(default)]
    pub link: Option<String>,
    /// The PBX's id of the recording file.
    #[serde(default)]
    pub file_id: Option<String>,
}

/// What a recording report did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RecordingResponse {
    pub call_id: String,
    /// What became of it for the after-call webhook (absent when it was
    /// there already): `kept_for_end` (the call has not ended; its end will
    /// carry it), `sent_with_it` (put into the after-call webhook, which had
    /// not gone; it goes now, or once its during-call one is final),
    /// `sent_without_it` (the webhook had gone: stored and shown; send it
    /// again with it from the console or with
    /// `POST /api/v1/deliveries/{id}/retry?rebuild=true`), `no_webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "sent_with_it")]
    pub after_call: Option<RecordingOutcome>,
}

/// Report a call's recording after (or before) its end: stored on the call,
/// and put into its after-call webhook if that has not gone yet. The same
/// recording again is a 200 with nothing new; another one for a call that
/// has one is a 409.
#[utoipa::path(post, path = "/api/v1/calls/{id}/recording", tag = "ingest",
    request_body = RecordingBody, security(("ingest_token" = [])),
    params(("id" = String, Path, description = "the call's id")),
    responses((status = 202, body = RecordingResponse, description = "stored"),
              (status = 200, body = RecordingResponse, description = "the call has this recording already"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "neither started nor ended yet: send it again once the start or end is in"),
              (status = 409, body = ErrorBody, description = "the call has another recording"),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn recording(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    body: JsonObject,
) -> Result<(StatusCode, Json<RecordingResponse>), ApiError> {
    let id = parse_call_id(&id, "id")?;
    let input = parse_recording(&body)?;
    let stored = state.calls.recording(&id, &input).await?;
    let (status, after_call) = match stored {
        RecordingStored::Created(outcome) => {
            metrics::counter!("callhook_calls_ingested_total", "event" => "recording").increment(1);
            tracing::info!(call_id = %id, ?outcome, "call recording stored");
            (StatusCode::ACCEPTED, Some(outcome))
        }
        RecordingStored::Repeated => (StatusCode::OK, None),
    };
    Ok((
        status,
        Json(RecordingResponse {
            call_id: id,
            after_call,
        }),
    ))
}

/// A recording's body, checked, without IO: at least one of `link` and
/// `file_id`, not empty.
pub(crate) fn parse_recording(body: &JsonObject) -> Result<Recording, ApiError> {
    let b: RecordingBody = body.parse()?;
    let text = |field: &str, v: Option<String>| -> Result<Option<String>, FieldError> {
        v.filter(|s| !s.is_empty())
            .map(|s| check_text(field, &s, MAX_FIELD_LEN).map(str::to_owned))
            .transpose()
    };
    let link = text("link", b.link)?;
    let file_id = text("file_id", b.file_id)?;
    if link.is_none() && file_id.is_none() {
        return Err(FieldError::new(
            "link",
            "required",
            "give the recording's link, its file_id, or both",
        )
        .into());
    }
    Ok(Recording { link, file_id })
}
