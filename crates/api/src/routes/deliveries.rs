//! Admin API: the delivery log. A call with its deliveries, the filtered list
//! of deliveries (newest first, keyset pagination), one delivery with its
//! attempts, and requeuing (one, or every match of the list's filters).

use axum::extract::State;
use axum::Extension;
use axum::Json;
use callhook_core::call::parse_call_id;
use callhook_core::{DeliveryKind, DeliveryState};
use callhook_store::log::{self, DeliveryFilter, DeliveryRow, Retried};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Actor;
use crate::error::ErrorBody;
use crate::json::{PathParam, QueryParams};
use crate::ops;
use crate::ops::deliveries::{decode_cursor, delivery_error, encode_cursor};
use crate::{ApiError, AppState};

pub(crate) use super::delivery_views::{
    AttemptView, CallDetail, DeliveryDetail, DeliveryPage, DeliveryView,
};

/// Default page size of the list.
pub(crate) const DEFAULT_LIMIT: u32 = 50;
/// Largest page size of the list.
pub(crate) const MAX_LIMIT: u32 = 500;

/// How many deliveries a bulk retry requeued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Requeued {
    pub requeued: u64,
}

/// How to send one delivery again.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RetryQuery {
    /// Build a final after-call webhook's body again from its call as it is
    /// now (with a recording that came after it went); default false.
    pub rebuild: Option<bool>,
}

/// The list's filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FilterQuery {
    pub scenario_id: Option<Uuid>,
    pub call_id: Option<String>,
    #[param(value_type = Option<String>, example = "failed")]
    pub state: Option<DeliveryState>,
    #[param(value_type = Option<String>, example = "after_call")]
    pub kind: Option<DeliveryKind>,
    /// RFC 3339; `created_at >= since`.
    pub since: Option<String>,
    /// RFC 3339; `created_at < until`.
    pub until: Option<String>,
}

/// The list's filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    pub scenario_id: Option<Uuid>,
    pub call_id: Option<String>,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    #[param(value_type = Option<String>, example = "failed")]
    pub state: Option<DeliveryState>,
    /// `during_call` or `after_call`.
    #[param(value_type = Option<String>, example = "after_call")]
    pub kind: Option<DeliveryKind>,
    /// RFC 3339; `created_at >= since`.
    pub since: Option<String>,
    /// RFC 3339; `created_at < until`.
    pub until: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

/// RFC 3339; a `+` turned into a space by form decoding is put back.
fn parse_time(v: Option<&str>, field: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    DateTime::parse_from_rfc3339(&v.replace(' ', "+"))
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            ApiError::unprocessable(
                field,
                "invalid_time",
                format!("{field} must be an RFC 3339 time such as 2026-11-25T10:00:00Z: {e}"),
            )
        })
}

fn filter(
    scenario_id: Option<Uuid>,
    call_id: Option<String>,
    state: Option<DeliveryState>,
    kind: Option<DeliveryKind>,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<DeliveryFilter, ApiError> {
    Ok(DeliveryFilter {
        scenario_id,
        call_id: call_id.map(|c| parse_call_id(&c, "call_id")).transpose()?,
        state,
        kind,
        since: parse_time(since, "since")?,
        until: parse_time(until, "until")?,
    })
}

/// Attaches each delivery's attempts.
async fn with_attempts(
    state: &AppState,
    rows: Vec<DeliveryRow>,
) -> Result<Vec<DeliveryDetail>, ApiError> {
    let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
    let mut by_delivery: std::collections::HashMap<Uuid, Vec<AttemptView>> =
        std::collections::HashMap::new();
    for a in log::attempts(&state.pool, &ids).await? {
        if let Some(d) = a.delivery_id {
            by_delivery.entry(d).or_default().push(a.into());
        }
    }
    Ok(rows
        .into_iter()
        .map(|d| DeliveryDetail {
            attempts: by_delivery.remove(&d.id).unwrap_or_default(),
            delivery: d.into(),
        })
        .collect())
}

/// A call with its deliveries and their attempts.
#[utoipa::path(get, path = "/api/v1/calls/{id}", tag = "deliveries", security(("admin_token" = [])),
    params(("id" = String, Path, description = "the call's id from the telephony side")),
    responses((status = 200, body = CallDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_call(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<CallDetail>, ApiError> {
    // What no call id can be (a NUL, say) is a 422 here, not a database error.
    let id = parse_call_id(&id, "id")?;
    let call = log::call_json(&state.pool, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("call {id} does not exist")).with_field("id"))?;
    let rows = log::of_call(&state.pool, &id).await?;
    Ok(Json(CallDetail {
        call,
        deliveries: with_attempts(&state, rows).await?,
    }))
}

/// Deliveries, newest first, filtered; keyset pagination (`next` → `after`).
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "deliveries", security(("admin_token" = [])),
    params(ListQuery),
    responses((status = 200, body = DeliveryPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::unprocessable(
            "limit",
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = q.after.as_deref().map(decode_cursor).transpose()?;
    let f = filter(
        q.scenario_id,
        q.call_id,
        q.state,
        q.kind,
        q.since.as_deref(),
        q.until.as_deref(),
    )?;
    let mut rows = log::list(&state.pool, &f, after, i64::from(limit) + 1).await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|d| encode_cursor(d.id))
    } else {
        None
    };
    Ok(Json(DeliveryPage {
        items: rows.into_iter().map(Into::into).collect(),
        next,
    }))
}

/// One delivery with its attempts in order.
#[utoipa::path(get, path = "/api/v1/deliveries/{id}", tag = "deliveries", security(("admin_token" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = DeliveryDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    PathParam(id): PathParam<Uuid>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let row = log::get(&state.pool, id)
        .await
        .map_err(delivery_error(id))?;
    let mut all = with_attempts(&state, vec![row]).await?;
    Ok(Json(all.remove(0)))
}

/// Send a delivery again: a `failed`, `cancelled` or `delivered` one goes
/// back to `pending`, due now, with the same `webhook-id`; its attempt
/// numbering continues. It gets one more attempt and then whatever retries
/// the schedule has left (none once it is exhausted). A `pending` one is
/// sent now instead of at its next retry ("send now", once the receiver is
/// fixed); one waiting for its call's during-call webhook (`blocked_by`) or
/// for its paused endpoint (`parked`) keeps waiting, as the answer shows.
/// `?rebuild=true` first builds a final after-call webhook's body again from
/// its call as it is now (a recording that came after it went).
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/retry", tag = "deliveries", security(("admin_token" = [])),
    params(("id" = Uuid, Path), RetryQuery),
    responses((status = 200, body = DeliveryView, description = "requeued, or sent now"), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "rebuild asked for a pending delivery"),
              (status = 422, body = ErrorBody, description = "rebuild asked for a during-call webhook, or its body would be too large")))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    PathParam(id): PathParam<Uuid>,
    QueryParams(q): QueryParams<RetryQuery>,
) -> Result<Json<DeliveryView>, ApiError> {
    let rebuild = q.rebuild.unwrap_or(false);
    let (Retried::Requeued(row) | Retried::SentNow(row)) =
        ops::deliveries::retry(&state, &actor, id, rebuild).await?;
    Ok(Json((*row).into()))
}

/// Send again every `failed`, `cancelled` or `delivered` delivery matching
/// the list's filters (pending ones are left as they are), e.g.
/// `?scenario_id=…&state=failed&since=2026-11-25T10:00:00Z`; with
/// `state=pending`, send the matching pending ones now instead of at their
/// next retry (at `CALLHOOK_DRAIN_RATE`, a call's after-call webhook still
/// after its during-call one). At least one filter is required, so an
/// empty query cannot resend the whole history.
#[utoipa::path(post, path = "/api/v1/deliveries/retry", tag = "deliveries", security(("admin_token" = [])),
    params(FilterQuery),
    responses((status = 200, body = Requeued), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn retry_matching(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    QueryParams(q): QueryParams<FilterQuery>,
) -> Result<Json<Requeued>, ApiError> {
    let f = filter(
        q.scenario_id,
        q.call_id,
        q.state,
        q.kind,
        q.since.as_deref(),
        q.until.as_deref(),
    )?;
    let n = ops::deliveries::retry_matching(&state, &actor, &f).await?;
    Ok(Json(Requeued { requeued: n }))
}
