//! The audit log: who changed what, one row per admin change.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

/// One audit row.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: String,
    pub scenario_id: Option<Uuid>,
    /// The name of the token used.
    pub actor: String,
    /// What changed; never a secret.
    pub details: Value,
}

/// Records one admin change.
pub async fn record(
    e: impl PgExecutor<'_>,
    action: &str,
    scenario_id: Option<Uuid>,
    actor: &str,
    details: Value,
) -> Result<(), StoreError> {
    sqlx::query!(
        "insert into audit_log (action, scenario_id, actor, details) values ($1, $2, $3, $4)",
        action,
        scenario_id,
        actor,
        details,
    )
    .execute(e)
    .await?;
    Ok(())
}

/// A page of the trail, newest first, older than `after` (the previous
/// page's last id), optionally one scenario's and since a time.
pub async fn list(
    e: impl PgExecutor<'_>,
    scenario_id: Option<Uuid>,
    since: Option<DateTime<Utc>>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    Ok(sqlx::query_as!(
        AuditRow,
        r#"select id, at, action, scenario_id, actor, details
             from audit_log
            where ($1::uuid is null or scenario_id = $1)
              and ($2::timestamptz is null or at >= $2)
              and ($3::bigint is null or id < $3)
            order by id desc
            limit $4"#,
        scenario_id,
        since,
        after,
        limit,
    )
    .fetch_all(e)
    .await?)
}
