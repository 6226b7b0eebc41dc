//! Visits and number pools: reserving a tracking number for a website visit
//! (ingest API), and a pool's state (admin API).

use axum::extract::State;
use axum::Json;
use callhook_core::{FieldError, Visit};
use callhook_store::pool::{self, PoolNumber, PoolStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ErrorBody;
use crate::json::{JsonObject, PathParam};
use crate::{ApiError, AppState};

/// A website visit asking for a tracking number. The visit's fields
/// (`marker`, `landing_page`, `domain`, `referrer`, `city`, `country`, `ip`,
/// `first_visit`, `google_client_id`, `metrika_client_id`, `utm_*`,
/// `roistat_param_1..5`, `source_level_1`, `source_level_2`, `order_id`) may
/// be given too; calls to the number while reserved carry them.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct VisitBody {
    /// The scenario whose pool the number comes from.
    pub scenario_id: Uuid,
    /// The visit's id: the same id again (the page's heartbeat) extends the
    /// reservation and keeps the number.
    pub visit_id: String,
}

/// The number to show the visitor.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct VisitReservation {
    /// Digits only, e.g. `78005552233`.
    pub number: String,
    /// The reservation lasts until then unless the visit heartbeats again.
    pub reserved_until: DateTime<Utc>,
    /// True when the pool was exhausted and another visit holds the number
    /// too: the pool is too small.
    pub shared: bool,
}

/// Reserve a tracking number for a visit (or extend the visit's reservation).
#[utoipa::path(post, path = "/api/v1/visits", tag = "ingest", request_body = VisitBody,
    security(("ingest_token" = [])),
    responses((status = 200, body = VisitReservation, description = "the number reserved for the visit"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "a bad field; unknown scenario, or a scenario without pool numbers (`scenario_id`)"),
              (status = 503, body = ErrorBody, description = "database unavailable; retry")))]
pub(crate) async fn reserve(
    State(state): State<AppState>,
    body: JsonObject,
) -> Result<Json<VisitReservation>, ApiError> {
    body.only(|k| k == "scenario_id" || Visit::is_field(k))?;
    let visit = Visit::from_json(&body.0)?;
    let mut core_only = body.0.clone();
    core_only.retain(|k, _| k == "scenario_id" || k == "visit_id");
    let b: VisitBody = JsonObject(core_only).parse()?;
    if b.visit_id.trim().is_empty() {
        return Err(FieldError::new("visit_id", "required", "visit_id must not be empty").into());
    }
    let r = pool::reserve(
        &state.pool,
        b.scenario_id,
        &visit,
        state.ingest.reservation_hold,
    )
    .await?;
    let scenario = b.scenario_id.to_string();
    if r.shared && !r.renewed {
        metrics::counter!("callhook_pool_shared_reservations_total", "scenario_id" => scenario.clone())
            .increment(1);
        tracing::warn!(scenario_id = %b.scenario_id, number = %r.number, "pool exhausted: number shared");
    }
    metrics::counter!("callhook_pool_reservations_total", "scenario_id" => scenario,
        "renewed" => if r.renewed { "true" } else { "false" })
    .increment(1);
    Ok(Json(VisitReservation {
        number: r.number,
        reserved_until: r.reserved_until,
        shared: r.shared,
    }))
}

/// A scenario's pool: its size and use, and each number's state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PoolView {
    pub scenario_id: Uuid,
    /// Numbers that can be reserved (static ones not counted).
    pub size: i64,
    /// Pool numbers reserved right now.
    pub reserved_now: i64,
    /// Pool numbers free right now.
    pub free_now: i64,
    /// Static numbers (never reserved).
    pub static_numbers: i64,
    /// Reservations handed out shared (pool exhausted) since midnight in the
    /// scenario's zone.
    pub shared_today: i64,
    pub numbers: Vec<PoolNumberView>,
}

/// One number and its state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PoolNumberView {
    pub number: String,
    /// `free`, `reserved` or `static`.
    pub state: String,
    /// `reserved`: the visit holding it (the latest, when shared).
    pub visit_id: Option<String>,
    /// `reserved`: until when.
    pub reserved_until: Option<DateTime<Utc>>,
    /// `reserved`: whether that reservation is shared.
    pub shared: Option<bool>,
    /// `free`: when its last reservation ended (null: never reserved).
    pub released_at: Option<DateTime<Utc>>,
    /// `static`: the fixed fields calls to it carry.
    pub marker: Option<String>,
    pub source_level_1: Option<String>,
    pub source_level_2: Option<String>,
}

impl From<PoolNumber> for PoolNumberView {
    fn from(n: PoolNumber) -> Self {
        let state = if n.is_static {
            "static"
        } else if n.visit_id.is_some() {
            "reserved"
        } else {
            "free"
        };
        Self {
            number: n.number,
            state: state.to_owned(),
            visit_id: n.visit_id,
            reserved_until: n.reserved_until,
            shared: n.shared,
            released_at: n.released_at,
            marker: n.marker,
            source_level_1: n.source_level_1,
            source_level_2: n.source_level_2,
        }
    }
}

/// A scenario's number pool with each number's state.
#[utoipa::path(get, path = "/api/v1/scenarios/{id}/pool", tag = "scenarios", security(("admin_token" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PoolView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn pool(
    State(state): State<AppState>,
    PathParam(id): PathParam<Uuid>,
) -> Result<Json<PoolView>, ApiError> {
    let s: PoolStatus = pool::status(&state.pool, id).await.map_err(|e| {
        let e = ApiError::from(e);
        if e.status == axum::http::StatusCode::NOT_FOUND {
            ApiError::not_found(format!("scenario {id} does not exist")).with_field("id")
        } else {
            e
        }
    })?;
    Ok(Json(PoolView {
        scenario_id: id,
        size: s.size,
        reserved_now: s.reserved_now,
        free_now: s.size - s.reserved_now,
        static_numbers: s.static_numbers,
        shared_today: s.shared_today,
        numbers: s.numbers.into_iter().map(Into::into).collect(),
    }))
}
