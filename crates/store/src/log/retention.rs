//! Retention: deleting old attempts, finished deliveries and calls in
//! batches.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{v7_bound, ID_TIME_MARGIN};
use crate::StoreError;

/// Deletes up to `batch` attempts started before `cutoff`; returns how many.
pub async fn purge_attempts(
    e: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, StoreError> {
    let r = sqlx::query!(
        "delete from delivery_attempts where id in (
             select id from delivery_attempts where started_at < $1 order by started_at limit $2)",
        cutoff,
        batch
    )
    .execute(e)
    .await?;
    Ok(r.rows_affected())
}

/// Walks up to `batch` deliveries in id order (oldest first) after `after`,
/// among those whose id is older than `cutoff` (plus a margin), and deletes
/// the delivered or cancelled ones created before `cutoff`, with their
/// attempts; pending and failed ones are kept. Returns how many were deleted
/// and the last id walked (`None` once there is nothing more to walk), the
/// `after` of the next call. Ids are UUIDv7, so this walks the primary key
/// and needs no index of its own.
pub async fn purge_deliveries(
    e: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
    after: Option<Uuid>,
    batch: i64,
) -> Result<(u64, Option<Uuid>), StoreError> {
    let row = sqlx::query!(
        r#"with walked as (
               select id, state, created_at from deliveries
                where id < $1 and id > $2
                order by id limit $3
           ), gone as (
               delete from deliveries d using walked w
                where d.id = w.id and w.state in ('delivered', 'cancelled') and w.created_at < $4
                  and d.state in ('delivered', 'cancelled')
            returning d.id
           )
           select (select count(*) from gone) as "deleted!", (select id from walked order by id desc limit 1) as "last""#,
        v7_bound(cutoff + ID_TIME_MARGIN, true),
        after.unwrap_or(Uuid::nil()),
        batch,
        cutoff,
    )
    .fetch_one(e)
    .await?;
    Ok((row.deleted as u64, row.last))
}

/// Deletes up to `batch` calls created before `cutoff` that have no
/// deliveries left.
pub async fn purge_calls(
    e: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, StoreError> {
    let r = sqlx::query!(
        "delete from calls where id in (
             select c.id from calls c
              where c.created_at < $1
                and not exists (select 1 from deliveries d where d.call_id = c.id)
              order by c.created_at limit $2)
            and not exists (select 1 from deliveries d where d.call_id = calls.id)",
        cutoff,
        batch
    )
    .execute(e)
    .await?;
    Ok(r.rows_affected())
}
