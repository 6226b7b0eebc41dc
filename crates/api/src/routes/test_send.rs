//! Admin API: send a scenario's webhook with a sample payload now
//! (`ops::test_send`), and answer with what happened.

use axum::extract::State;
use axum::Extension;
use axum::Json;
use callhook_core::EndpointKind;
use uuid::Uuid;

use crate::auth::Actor;
use crate::error::ErrorBody;
use crate::json::{JsonObject, PathParam};
use crate::ops;
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
