//! The operator's view of the delivery log: listing and reading deliveries
//! with their attempts, requeuing them, recording test sends, and retention.
//!
//! The list is newest first with keyset pagination on the UUIDv7 id. Time
//! filters are on `created_at`; because the id carries (almost) the same
//! time, they are also turned into a slightly wider id range, so every
//! filtered page is an index range scan bounded on both ends.

use callhook_core::{Condition, DeliveryKind, DeliveryState};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use sqlx::types::Json;
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::StoreError;

mod requeue;
mod retention;

pub use requeue::{count_final, record_test_attempt, retry, retry_matching, send_now, Retried};
pub use retention::{purge_attempts, purge_calls, purge_deliveries};

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
    /// Cancelled `filtered`: the condition that did not hold.
    pub filtered_by: Option<Json<Condition>>,
    /// A during-call delivery whose call has ended: cancelled `call_ended`
    /// if not delivered by then.
    pub expires_at: Option<DateTime<Utc>>,
    /// An after-call delivery held for its call's recording until then.
    pub recording_due_at: Option<DateTime<Utc>>,
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
        // A literal, not a parameter: the partial indexes of the rarer
        // states (`where state <> 'delivered'`) are only usable when the
        // planner sees the value. `as_str` is one of four fixed words.
        qb.push(format_args!(" and state = '{}'", s.as_str()));
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
     last_status, last_error, created_at, delivered_at, payload, filtered_by, expires_at, \
     recording_due_at";

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

/// The live view's horizon: every delivery with an id older than it is
/// committed, so a window of ids below it, once read, never gains a row.
///
/// Ids are made inside the inserting transaction, so the horizon is the
/// start of the oldest open transaction that has written anything (a
/// second ago at the latest, for the clock the id came from). A transaction
/// open for more than a minute does not hold the view back further.
pub async fn live_horizon(e: impl PgExecutor<'_>) -> Result<DateTime<Utc>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"select greatest(now() - interval '1 minute',
                  least(now() - interval '1 second',
                        (select min(xact_start) from pg_stat_activity
                          where datname = current_database() and backend_xid is not null
                            and pid <> pg_backend_pid()))) as "horizon!""#
    )
    .fetch_one(e)
    .await?)
}

/// The deliveries matching `filter` whose id time is in `[from, to)`
/// (milliseconds, as the ids carry them), newest first, at most `limit`.
pub async fn list_window(
    e: impl PgExecutor<'_>,
    filter: &DeliveryFilter,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut qb = QueryBuilder::new(format!("select {DELIVERY_COLUMNS} from deliveries"));
    push_filters(&mut qb, filter);
    qb.push(" and id >= ").push_bind(v7_bound(from, false));
    qb.push(" and id < ").push_bind(v7_bound(to, false));
    qb.push(" order by id desc limit ").push_bind(limit);
    Ok(qb.build_query_as::<DeliveryRow>().fetch_all(e).await?)
}

/// The smallest id of the millisecond `t`: ids below it were made before
/// `t`, ids at or above it at `t` or later.
pub fn id_before(t: DateTime<Utc>) -> Uuid {
    v7_bound(t, false)
}

/// One delivery.
pub async fn get(e: impl PgExecutor<'_>, id: Uuid) -> Result<DeliveryRow, StoreError> {
    sqlx::query_as!(
        DeliveryRow,
        r#"select id, call_id, scenario_id, kind as "kind: DeliveryKind",
                state as "state: DeliveryState", attempt_count, next_attempt_at, blocked_by, parked,
                last_status, last_error, created_at, delivered_at, payload,
                filtered_by as "filtered_by: Json<Condition>", expires_at, recording_due_at
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
                last_status, last_error, created_at, delivered_at, payload,
                filtered_by as "filtered_by: Json<Condition>", expires_at, recording_due_at
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
                  -- core's failure_text: the transport error, else http_<status> (not 2xx)
                  (array_agg(coalesce(last_error, 'http_' || last_status) order by id desc)
                     filter (where last_error is not null or last_status not between 200 and 299))[1]
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
