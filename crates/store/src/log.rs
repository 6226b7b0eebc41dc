//! The operator's view of the delivery log: listing and reading deliveries
//! with their attempts, requeuing them, recording test sends, and retention.
//!
//! The list is newest first with keyset pagination on the UUIDv7 id. Time
//! filters are on `created_at`; because the id carries (almost) the same
//! time, they are also turned into a slightly wider id range, so every
//! filtered page is an index range scan bounded on both ends.

use callhook_core::{DeliveryKind, DeliveryState};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::queue::{self, AttemptRecord};
use crate::StoreError;

/// How far a delivery's id time may be from its `created_at` (the id is made
/// in the ingest transaction that sets `created_at`; the margin also covers
/// clock skew between the app and the database host).
const ID_TIME_MARGIN: TimeDelta = TimeDelta::minutes(10);

/// The list's filters; `None` = any.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub scenario_id: Option<Uuid>,
    pub call_id: Option<String>,
    pub state: Option<DeliveryState>,
    pub kind: Option<DeliveryKind>,
    /// `created_at >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `created_at < until`.
    pub until: Option<DateTime<Utc>>,
}

/// A delivery as operators see it (the table's columns but the lease).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    /// Null for an operator event.
    pub call_id: Option<String>,
    pub scenario_id: Option<Uuid>,
    pub kind: DeliveryKind,
    pub state: DeliveryState,
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The during-call delivery this after-call one waits for.
    pub blocked_by: Option<Uuid>,
    /// Waiting for its paused or disabled endpoint.
    pub parked: bool,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The exact body sent.
    pub payload: String,
}

/// One attempt row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: i64,
    pub delivery_id: Option<Uuid>,
    pub attempt: i32,
    pub url: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub is_test: bool,
}

/// The smallest UUIDv7 of the millisecond `t` (or the largest, `upper`).
fn v7_bound(t: DateTime<Utc>, upper: bool) -> Uuid {
    let ms = u128::try_from(t.timestamp_millis().max(0)).unwrap_or(0) & ((1 << 48) - 1);
    let low = if upper { (1u128 << 80) - 1 } else { 0 };
    Uuid::from_u128((ms << 80) | low)
}

fn push_filters(qb: &mut QueryBuilder<'_, Postgres>, f: &DeliveryFilter) {
    qb.push(" where true");
    if let Some(s) = f.scenario_id {
        qb.push(" and scenario_id = ").push_bind(s);
    }
    if let Some(c) = &f.call_id {
        qb.push(" and call_id = ").push_bind(c.clone());
    }
    if let Some(s) = &f.state {
        qb.push(" and state = ").push_bind(*s);
    }
    if let Some(k) = &f.kind {
        qb.push(" and kind = ").push_bind(*k);
    }
    if let Some(t) = f.since {
        qb.push(" and created_at >= ").push_bind(t);
        qb.push(" and id >= ")
            .push_bind(v7_bound(t - ID_TIME_MARGIN, false));
    }
    if let Some(t) = f.until {
        qb.push(" and created_at < ").push_bind(t);
        qb.push(" and id <= ")
            .push_bind(v7_bound(t + ID_TIME_MARGIN, true));
    }
}

const DELIVERY_COLUMNS: &str =
    "id, call_id, scenario_id, kind, state, attempt_count, next_attempt_at, blocked_by, parked, \
     last_status, last_error, created_at, delivered_at, payload";

/// A page of deliveries matching `filter`, newest first, strictly older than
/// `after` (the last id of the previous page). Asks for `limit` rows.
pub async fn list(
    e: impl PgExecutor<'_>,
    filter: &DeliveryFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut qb = QueryBuilder::new(format!("select {DELIVERY_COLUMNS} from deliveries"));
    push_filters(&mut qb, filter);
    if let Some(a) = after {
        qb.push(" and id < ").push_bind(a);
    }
    qb.push(" order by id desc limit ").push_bind(limit);
    Ok(qb.build_query_as::<DeliveryRow>().fetch_all(e).await?)
}

/// One delivery.
pub async fn get(e: impl PgExecutor<'_>, id: Uuid) -> Result<DeliveryRow, StoreError> {
    sqlx::query_as!(
        DeliveryRow,
        r#"select id, call_id, scenario_id, kind as "kind: DeliveryKind",
                state as "state: DeliveryState", attempt_count, next_attempt_at, blocked_by, parked,
                last_status, last_error, created_at, delivered_at, payload
           from deliveries where id = $1"#,
        id
    )
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}

/// A call's deliveries, during-call first.
pub async fn of_call(
    e: impl PgExecutor<'_>,
    call_id: &str,
) -> Result<Vec<DeliveryRow>, StoreError> {
    Ok(sqlx::query_as!(
        DeliveryRow,
        r#"select id, call_id, scenario_id, kind as "kind: DeliveryKind",
                state as "state: DeliveryState", attempt_count, next_attempt_at, blocked_by, parked,
                last_status, last_error, created_at, delivered_at, payload
           from deliveries where call_id = $1 order by id"#,
        call_id
    )
    .fetch_all(e)
    .await?)
}

/// The attempts of these deliveries, by delivery then attempt number.
pub async fn attempts(
    e: impl PgExecutor<'_>,
    delivery_ids: &[Uuid],
) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(sqlx::query_as!(
        AttemptRow,
        "select id, delivery_id, attempt, url, started_at, duration_ms, response_status,
                response_body, error, is_test
           from delivery_attempts where delivery_id = any($1)
          order by delivery_id, attempt",
        delivery_ids
    )
    .fetch_all(e)
    .await?)
}

/// A call's row as JSON, every column but the internal `*_hash`
/// fingerprints, in column order; `None` when there is no such call.
pub async fn call_json(
    e: impl PgExecutor<'_>,
    id: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let row = sqlx::query_scalar!(
        r#"select row_to_json(c)::text as "json!" from calls c where c.id = $1"#,
        id
    )
    .fetch_optional(e)
    .await?;
    let Some(text) = row else { return Ok(None) };
    let mut value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|err| StoreError::Db(sqlx::Error::Decode(Box::new(err))))?;
    if let Some(map) = value.as_object_mut() {
        map.shift_remove("start_hash");
        map.shift_remove("end_hash");
    }
    Ok(Some(value))
}

/// What a single retry did.
#[derive(Debug, Clone)]
pub enum Retried {
    /// Back to pending, due now.
    Requeued(Box<DeliveryRow>),
    /// It was pending already: nothing changed.
    AlreadyPending,
}

/// Puts a final delivery (`failed`, `cancelled`, `delivered`) back to
/// `pending`, due now; its attempt numbering continues. Wakes dispatchers.
pub async fn retry(pool: &sqlx::PgPool, id: Uuid) -> Result<Retried, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as!(
        DeliveryRow,
        r#"update deliveries
            set state = 'pending', next_attempt_at = now(), lease_token = null,
                delivered_at = null, updated_at = now()
          where id = $1 and state <> 'pending'
      returning id, call_id, scenario_id, kind as "kind: DeliveryKind",
                state as "state: DeliveryState", attempt_count, next_attempt_at, blocked_by, parked,
                last_status, last_error, created_at, delivered_at, payload"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        // Either it does not exist or it is pending.
        get(&mut *tx, id).await?;
        return Ok(Retried::AlreadyPending);
    };
    if let Some(call_id) = &row.call_id {
        queue::block_behind_during_call(&mut tx, std::slice::from_ref(call_id)).await?;
    }
    queue::notify(&mut *tx).await?;
    tx.commit().await?;
    Ok(Retried::Requeued(Box::new(row)))
}

/// How many final deliveries match `filter`: what [`retry_matching`] would
/// requeue (shown before an operator confirms).
pub async fn count_final(
    e: impl PgExecutor<'_>,
    filter: &DeliveryFilter,
) -> Result<i64, StoreError> {
    let mut qb = QueryBuilder::new("select count(*) from deliveries");
    push_filters(&mut qb, filter);
    qb.push(" and state <> 'pending'");
    Ok(qb.build_query_scalar().fetch_one(e).await?)
}

/// Requeues every final delivery matching `filter` (pending ones are left as
/// they are); returns how many. Wakes dispatchers.
pub async fn retry_matching(
    pool: &sqlx::PgPool,
    filter: &DeliveryFilter,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let mut qb = QueryBuilder::new(
        "update deliveries
            set state = 'pending', next_attempt_at = now(), lease_token = null,
                delivered_at = null, updated_at = now()
          where id in (select id from deliveries",
    );
    push_filters(&mut qb, filter);
    qb.push(" and state <> 'pending') returning call_id");
    let requeued: Vec<Option<String>> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
    let n = requeued.len() as u64;
    // Operator events (no call) are requeued too.
    let call_ids: Vec<String> = requeued.into_iter().flatten().collect();
    if n > 0 {
        queue::block_behind_during_call(&mut tx, &call_ids).await?;
        queue::notify(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// Records a test send of a scenario as an attempt (`is_test`, no delivery).
pub async fn record_test_attempt(
    e: impl PgExecutor<'_>,
    scenario_id: Uuid,
    kind: DeliveryKind,
    a: &AttemptRecord,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar!(
        "insert into delivery_attempts
                (delivery_id, scenario_id, kind, is_test, attempt, url, started_at, duration_ms,
                 response_status, response_body, error)
         values (null, $1, $2, true, 1, $3, $4, $5, $6, $7, $8)
      returning id",
        scenario_id,
        kind as _,
        a.url,
        a.started_at,
        a.duration_ms,
        a.response_status,
        a.response_body,
        a.error,
    )
    .fetch_one(e)
    .await?)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_bounds_enclose_ids_of_that_millisecond() {
        let t = Utc::now();
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            t.timestamp() as u64,
            t.timestamp_subsec_nanos() / 1_000_000 * 1_000_000,
        );
        let id = Uuid::new_v7(ts);
        assert!(v7_bound(t, false) <= id && id <= v7_bound(t, true));
        assert!(v7_bound(t - TimeDelta::milliseconds(1), true) < id);
        assert!(v7_bound(t + TimeDelta::milliseconds(1), false) > id);
    }
}

/// A scenario's deliveries created since a moment: delivered, failed, and
/// the newest error among them.
#[derive(Debug, Clone)]
pub struct Summary {
    pub scenario_id: Uuid,
    pub delivered: i64,
    pub failed: i64,
    pub last_error: Option<String>,
}

/// Every scenario's [`Summary`] since `since` (ids bound the scan, as in the
/// list).
pub async fn summaries_since(
    e: impl PgExecutor<'_>,
    since: DateTime<Utc>,
) -> Result<Vec<Summary>, StoreError> {
    Ok(sqlx::query_as!(
        Summary,
        r#"select scenario_id as "scenario_id!",
                  count(*) filter (where state = 'delivered') as "delivered!",
                  count(*) filter (where state = 'failed') as "failed!",
                  (array_agg(last_error order by id desc) filter (where last_error is not null))[1]
                    as last_error
             from deliveries
            where id >= $1 and created_at >= $2 and scenario_id is not null
            group by scenario_id"#,
        v7_bound(since - ID_TIME_MARGIN, false),
        since,
    )
    .fetch_all(e)
    .await?)
}
