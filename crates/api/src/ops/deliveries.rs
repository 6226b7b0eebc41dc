//! Deliveries: send one again, send every match of a filter again (bulk
//! recover), and the list's page cursor both front ends page with.

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use callhook_core::DeliveryState;
use callhook_store::log::{self, DeliveryFilter, Retried};
use uuid::Uuid;

use super::audit::{self, AuditEvent};
use crate::auth::Actor;
use crate::{ApiError, AppState};

/// A missing delivery answered at the path's `id`.
pub(crate) fn delivery_error(id: Uuid) -> impl FnOnce(callhook_store::StoreError) -> ApiError {
    move |e| match e {
        callhook_store::StoreError::NotFound => {
            ApiError::not_found(format!("delivery {id} does not exist")).with_field("id")
        }
        e => e.into(),
    }
}

/// Sends a delivery again: a final one back to `pending`, due now, same
/// `webhook-id` ([`Retried::Requeued`]); a pending one now rather than at
/// its next retry ([`Retried::SentNow`]: unless it waits for its call's
/// during-call delivery or its paused endpoint). With `rebuild`, a final
/// after-call delivery's body is first built again from its call as it is
/// now: a recording that came after it went.
pub(crate) async fn retry(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    rebuild: bool,
) -> Result<Retried, ApiError> {
    if rebuild {
        let max = state.settings.max_payload_bytes;
        callhook_store::calls::rebuild_for_resend(&state.pool, id, max)
            .await
            .map_err(|e| match e {
                callhook_store::calls::IngestError::Store(e) => delivery_error(id)(e),
                e => e.into(),
            })?;
    }
    let retried = log::retry(&state.pool, id)
        .await
        .map_err(delivery_error(id))?;
    let (Retried::Requeued(row) | Retried::SentNow(row)) = &retried;
    tracing::info!(delivery_id = %id, "delivery sent again");
    let event = AuditEvent::DeliveryRetry {
        delivery_id: id,
        call_id: row.call_id.clone(),
        kind: row.kind,
        rebuilt: rebuild,
    };
    audit::record(state, actor, row.scenario_id, event).await;
    Ok(retried)
}

/// Sends again every final delivery matching `f`, or with `state=pending`
/// sends the pending ones now (at `CALLHOOK_DRAIN_RATE`, per-call order
/// kept): how many. At least one filter is required, so an empty filter
/// cannot resend the whole history.
pub(crate) async fn retry_matching(
    state: &AppState,
    actor: &Actor,
    f: &DeliveryFilter,
) -> Result<u64, ApiError> {
    if f.scenario_id.is_none()
        && f.call_id.is_none()
        && f.state.is_none()
        && f.kind.is_none()
        && f.since.is_none()
        && f.until.is_none()
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "filter_required",
            "give at least one filter (scenario_id, call_id, state, kind, since, until)",
        ));
    }
    let n = if f.state == Some(DeliveryState::Pending) {
        log::send_now(&state.pool, f, state.settings.health.drain_per_second).await?
    } else {
        log::retry_matching(&state.pool, f).await?
    };
    tracing::info!(requeued = n, filter = ?f, "deliveries requeued");
    let event = AuditEvent::DeliveriesRetry {
        requeued: n,
        call_id: f.call_id.clone(),
        state: f.state,
        kind: f.kind,
        since: f.since,
        until: f.until,
    };
    audit::record(state, actor, f.scenario_id, event).await;
    Ok(n)
}

/// A page's `next`: the last delivery's id, opaque.
pub(crate) fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// An `after` given back: the id it stands for, else a 422 at `after`.
pub(crate) fn decode_cursor(s: &str) -> Result<Uuid, ApiError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(|| {
            ApiError::unprocessable(
                "after",
                "invalid_cursor",
                "after must be a `next` value from a previous page",
            )
        })
}
