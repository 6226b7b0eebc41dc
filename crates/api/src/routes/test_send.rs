//! Admin API: send a scenario's webhook with a sample payload now
//! (`ops::test_send`), and answer with what happened; try delivery rules
//! on its last calls (`ops::filter_preview`).

use axum::extract::State;
use axum::Extension;
use axum::Json;
use callhook_core::EndpointKind;
use uuid::Uuid;

use crate::auth::Actor;
use crate::error::ErrorBody;
use crate::json::{JsonObject, PathParam};
use crate::ops;
pub(crate) use crate::ops::filter_preview::{FilterPreview, FilterPreviewInput};
pub(crate) use crate::ops::test_send::{TestSendInput, TestSendResult};
use crate::{ApiError, AppState};

/// Send a sample webhook now and answer with the outcome (a receiver's 500
/// or an unreachable URL is still a `200` here: the outcome is the answer).
/// Signed with the scenario's secret, through the destination guard and
/// timeouts of real deliveries; recorded as a test attempt.
#[utoipa::path(post, path = "/api/v1/scenarios/{id}/test", tag = "scenarios", request_body = TestSendInput,
    security(("admin_token" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = TestSendResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "bad kind or url, or the scenario has no URL for that kind")))]
pub(crate) async fn test_send(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam(id): PathParam<Uuid>,
    body: JsonObject,
) -> Result<Json<TestSendResult>, ApiError> {
    let input = body.parse::<TestSendInput>()?;
    let kind = EndpointKind::parse(input.kind.as_str(), "kind")?;
    let result = ops::test_send::run(&state, &actor, id, kind, input.url.as_deref()).await?;
    Ok(Json(result))
}

/// A dry run of delivery rules: how many of the scenario's last 1,000 calls
/// each webhook would have been sent for under these conditions (the
/// scenario's own are not used), with a few call ids on each side. Nothing
/// is stored or sent.
#[utoipa::path(post, path = "/api/v1/scenarios/{id}/filter-preview", tag = "scenarios",
    request_body = FilterPreviewInput, security(("admin_token" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = FilterPreview), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody, description = "a bad condition, named")))]
pub(crate) async fn filter_preview(
    State(state): State<AppState>,
    PathParam(id): PathParam<Uuid>,
    body: JsonObject,
) -> Result<Json<FilterPreview>, ApiError> {
    let input = body.parse::<FilterPreviewInput>()?;
    Ok(Json(ops::filter_preview::run(&state, id, input).await?))
}
