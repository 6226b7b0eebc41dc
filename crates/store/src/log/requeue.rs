//! Putting final deliveries back in the queue (one, or all matching a
//! filter), sending pending ones now ("send now": the receiver is fixed,
//! the retry schedule need not be waited out), and recording test sends.

use callhook_core::{Condition, DeliveryKind, DeliveryState};
use sqlx::types::Json;
use sqlx::{PgExecutor, QueryBuilder};
use uuid::Uuid;

use super::{get, push_filters, DeliveryFilter, DeliveryRow};
use crate::queue::{self, AttemptRecord};
use crate::StoreError;

/// What a single retry did.
#[derive(Debug, Clone)]
pub enum Retried {
    /// Back to pending, due now.
    Requeued(Box<DeliveryRow>),
    /// It was pending: due now, unless it waits for its call's during-call
    /// delivery (`blocked_by`), for its paused endpoint (`parked`), or is
    /// being sent; the row says which.
    SentNow(Box<DeliveryRow>),
}

/// Puts a final delivery (`failed`, `cancelled`, `delivered`) back to
/// `pending`, due now; its attempt numbering continues. Wakes dispatchers.
pub async fn retry(pool: &sqlx::PgPool, id: Uuid) -> Result<Retried, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as!(
        DeliveryRow,
        r#"update deliveries
            set state = 'pending', next_attempt_at = now(), lease_token = null,
                delivered_at = null, expires_at = null, recording_due_at = null,
                updated_at = now()
          where id = $1 and state <> 'pending'
      returning id, call_id, scenario_id, kind as "kind: DeliveryKind",
                state as "state: DeliveryState", attempt_count, next_attempt_at, blocked_by, parked,
                last_status, last_error, created_at, delivered_at, payload,
                filtered_by as "filtered_by: Json<Condition>", expires_at, recording_due_at"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        // Either it does not exist or it is pending: then it goes now.
        let moved = sqlx::query!(
            "update deliveries set next_attempt_at = now(), recording_due_at = null, updated_at = now()
              where id = $1 and state = 'pending' and not parked and blocked_by is null
                and lease_token is null and next_attempt_at > now()",
            id
        )
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() > 0 {
            queue::notify(&mut *tx).await?;
        }
        let row = get(&mut *tx, id).await?;
        tx.commit().await?;
        return Ok(Retried::SentNow(Box::new(row)));
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
/// they are); returns how many. Wakes dispatchers. They go in the lowest
/// priority class (`requeued`): a bulk recover does not delay fresh calls.
pub async fn retry_matching(
    pool: &sqlx::PgPool,
    filter: &DeliveryFilter,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let mut qb = QueryBuilder::new(
        "update deliveries
            set state = 'pending', next_attempt_at = now(), lease_token = null,
                delivered_at = null, expires_at = null, requeued = true, updated_at = now()
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

/// Sends the pending deliveries matching `filter` now, oldest first and at
/// most `per_second` a second (a receiver just fixed is not flooded); how
/// many. Per-call order holds: an after-call delivery waiting for its
/// during-call one (`blocked_by`) stays behind it. Parked deliveries (a
/// paused endpoint) and those being sent are left as they are.
pub async fn send_now(
    pool: &sqlx::PgPool,
    filter: &DeliveryFilter,
    per_second: u32,
) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let mut qb = QueryBuilder::new(
        "with p as (select id, row_number() over (order by id) - 1 as n from deliveries",
    );
    push_filters(&mut qb, filter);
    qb.push(
        " and state = 'pending' and not parked and blocked_by is null
              and lease_token is null and next_attempt_at > now())
          update deliveries d
             set next_attempt_at = now() + make_interval(secs => p.n / ",
    );
    qb.push_bind(f64::from(per_second.max(1)));
    qb.push("::float8), updated_at = now() from p where d.id = p.id");
    let n = qb.build().execute(&mut *tx).await?.rows_affected();
    if n > 0 {
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
