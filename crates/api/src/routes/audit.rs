//! Admin API: the audit log (who changed what). Operations write it
//! (`ops::audit`).

use axum::extract::State;
use axum::Json;
use callhook_store::audit::{self, AuditRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ErrorBody;
use crate::json::QueryParams;
use crate::{ApiError, AppState};

/// One audit row.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditView {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `scenario.create`, `scenario.save`, `scenario.delete`, `secret.rotate`,
    /// `delivery.retry`, `deliveries.retry`, `endpoint.pause`,
    /// `endpoint.enable`, `endpoint.limits`, `endpoint.send_now`, `scenario.test`.
    pub action: String,
    pub scenario_id: Option<Uuid>,
    /// The name of the token used.
    pub actor: String,
    /// What changed (URLs before and after, counts); never a secret.
    #[schema(value_type = Object)]
    pub details: Value,
}

impl From<AuditRow> for AuditView {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            at: r.at,
            action: r.action,
            scenario_id: r.scenario_id,
            actor: r.actor,
            details: r.details,
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditPage {
    pub items: Vec<AuditView>,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    pub scenario_id: Option<Uuid>,
    /// RFC 3339; `at >= since`.
    pub since: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
    /// 1 to 500 (default 50).
    pub limit: Option<u32>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit", security(("admin_token" = [])),
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::unprocessable(
            "limit",
            "out_of_range",
            "limit must be 1 to 500",
        ));
    }
    let since = q
        .since
        .as_deref()
        .map(|s| {
            DateTime::parse_from_rfc3339(&s.replace(' ', "+"))
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::unprocessable(
                        "since",
                        "invalid_time",
                        format!("since must be an RFC 3339 time such as 2026-11-25T10:00:00Z: {e}"),
                    )
                })
        })
        .transpose()?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            a.parse::<i64>().map_err(|_| {
                ApiError::unprocessable("after", "invalid_cursor", "after must be a page's next")
            })
        })
        .transpose()?;
    let mut rows = audit::list(
        &state.pool,
        q.scenario_id,
        since,
        after,
        i64::from(limit) + 1,
    )
    .await?;
    let next = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    });
    Ok(Json(AuditPage {
        items: rows.into_iter().map(Into::into).collect(),
        next: next.flatten(),
    }))
}
