//! The delivery queue: claim due deliveries under a lease, complete them in
//! batches, release leases at shutdown.
//!
//! A claim is a short transaction (`FOR UPDATE SKIP LOCKED`) that stamps a
//! `lease_token` and pushes `next_attempt_at` to the lease's end; the HTTP call
//! then happens outside any transaction. If the process dies, the row simply
//! becomes due again when the lease runs out. Completion only applies while
//! the row still carries the claim's token, so a worker whose lease was taken
//! over cannot overwrite the new owner's result.

use std::time::Duration;

use callhook_core::{DeliveryKind, EndpointState, StoredSecret};
use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::StoreError;

mod complete;
mod order;

pub use complete::{complete, AttemptRecord, Completed, Completion, Outcome};
pub(crate) use order::{block_behind_during_call, cancel_pending};

/// A claimed delivery with what sending it needs, read at claim time: the
/// scenario's URL for this kind as it is now (null = removed) and its secret.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    /// Null for an operator event.
    pub call_id: Option<String>,
    pub kind: DeliveryKind,
    pub payload: String,
    /// Attempts made before this one.
    pub attempt_count: i32,
    pub created_at: DateTime<Utc>,
    pub url: Option<String>,
    pub signing_secret: Option<StoredSecret>,
    /// The secret before the last rotation, while its overlap runs: webhooks
    /// are signed with both.
    pub previous_signing_secret: Option<StoredSecret>,
    pub lease_token: Uuid,
    /// Null for an operator event, or once the scenario is deleted.
    pub scenario_id: Option<Uuid>,
    /// The state of the endpoint it goes to (null: none, or an operator event).
    pub endpoint_state: Option<EndpointState>,
    /// Taken as its paused endpoint's probe: sent although the endpoint
    /// holds its deliveries.
    pub probe: bool,
}

/// Claims up to `limit` due deliveries for `lease`. An after-call delivery
/// waiting for its call's during-call delivery (`blocked_by`) has no due time,
/// so it is never claimed before that one is final.
pub async fn claim(pool: &PgPool, limit: i64, lease: Duration) -> Result<Vec<Claimed>, StoreError> {
    let token = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    // A claim only stamps a lease. Should a crash lose it, the row is still
    // pending and due, and is claimed again: nothing acknowledged depends on
    // this commit being flushed, so it need not wait for the WAL flush.
    //
    // And the claim must walk the due index in order and stop at `limit`.
    // When a burst leaves thousands of rows due, a planner that misjudges
    // the range (fresh statistics) picks a bitmap scan that reads and sorts
    // every due row on every claim; these settings rule that plan out for
    // this transaction only.
    sqlx::query!(
        r#"select set_config('synchronous_commit', 'off', true) as "a",
                  set_config('enable_bitmapscan', 'off', true) as "b",
                  set_config('enable_seqscan', 'off', true) as "c""#
    )
    .fetch_one(&mut *tx)
    .await?;
    let rows = sqlx::query_as!(
        Claimed,
        r#"with due as (
               select d.id
                 from deliveries d
                where d.state = 'pending'
                  and d.next_attempt_at <= now()
                order by d.next_attempt_at
                limit $1
                  for update of d skip locked
           ), claimed as (
               update deliveries d
                  set lease_token = $2,
                      next_attempt_at = now() + make_interval(secs => $3),
                      updated_at = now()
                 from due
                where d.id = due.id
            returning d.id, d.call_id, d.kind, d.payload, d.attempt_count, d.created_at, d.scenario_id
           )
           select c.id as "id!", c.call_id, c.kind as "kind!: DeliveryKind",
                  c.payload as "payload!",
                  c.attempt_count as "attempt_count!", c.created_at as "created_at!",
                  case c.kind when 'during_call' then s.during_call_url else s.after_call_url end as url,
                  s.signing_secret as "signing_secret?: StoredSecret",
                  case when s.previous_secret_expires_at > now() then s.previous_signing_secret end
                    as "previous_signing_secret?: StoredSecret",
                  $2::uuid as "lease_token!", c.scenario_id,
                  e.state as "endpoint_state?: EndpointState", false as "probe!"
             from claimed c
             left join scenarios s on s.id = c.scenario_id
             left join endpoints e on e.scenario_id = c.scenario_id and e.kind = c.kind"#,
        limit,
        token,
        lease.as_secs_f64(),
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// Hands claimed deliveries back (at shutdown): due now, lease cleared.
pub async fn release(
    e: impl PgExecutor<'_>,
    ids: &[Uuid],
    lease_tokens: &[Uuid],
) -> Result<u64, StoreError> {
    let r = sqlx::query!(
        "update deliveries d
            set next_attempt_at = now(), lease_token = null, updated_at = now()
           from unnest($1::uuid[], $2::uuid[]) as t(id, lease_token)
          where d.id = t.id and d.lease_token = t.lease_token and d.state = 'pending'",
        ids,
        lease_tokens
    )
    .execute(e)
    .await?;
    Ok(r.rows_affected())
}

/// When the next pending delivery falls due, if it is in the future: how
/// long a dispatcher with nothing to do may sleep. (Blocked after-call
/// deliveries have no due time; what unblocks them wakes the dispatchers.)
pub async fn next_due_in(e: impl PgExecutor<'_>) -> Result<Option<Duration>, StoreError> {
    let secs = sqlx::query_scalar!(
        r#"select extract(epoch from min(next_attempt_at) - now())::float8 as "secs"
             from deliveries
            where state = 'pending' and next_attempt_at > now()"#
    )
    .fetch_one(e)
    .await?;
    Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// A connection that receives a notification whenever deliveries are queued.
pub async fn subscribe(pool: &PgPool) -> Result<sqlx::postgres::PgListener, StoreError> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(crate::NOTIFY_CHANNEL).await?;
    Ok(listener)
}

/// The size of the queue, for gauges.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    pub pending: i64,
    pub oldest_age_seconds: f64,
}

/// Pending deliveries and the age of the oldest; reads only the partial
/// index of pending rows.
pub async fn backlog(e: impl PgExecutor<'_>) -> Result<Backlog, StoreError> {
    let row = sqlx::query!(
        r#"select count(*) as "pending!",
                  coalesce(extract(epoch from now() - min(created_at)), 0)::float8 as "oldest!"
             from deliveries where state = 'pending'"#
    )
    .fetch_one(e)
    .await?;
    Ok(Backlog {
        pending: row.pending,
        oldest_age_seconds: row.oldest,
    })
}

/// Wakes every dispatcher (`NOTIFY`; inside a transaction, sent when it
/// commits).
pub async fn notify(e: impl PgExecutor<'_>) -> Result<(), StoreError> {
    sqlx::query!("select pg_notify($1, '')", crate::NOTIFY_CHANNEL)
        .execute(e)
        .await?;
    Ok(())
}
