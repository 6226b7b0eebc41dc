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

use callhook_core::{CancelReason, DeliveryKind, DeliveryState};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::StoreError;

/// A claimed delivery with what sending it needs, read at claim time: the
/// scenario's URL for this kind as it is now (null = removed) and its secret.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub call_id: String,
    pub kind: DeliveryKind,
    pub payload: String,
    /// Attempts made before this one.
    pub attempt_count: i32,
    pub created_at: DateTime<Utc>,
    pub url: Option<String>,
    pub signing_secret: Option<String>,
    /// The secret before the last rotation, while its overlap runs: webhooks
    /// are signed with both.
    pub previous_signing_secret: Option<String>,
    pub lease_token: Uuid,
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
           select c.id as "id!", c.call_id as "call_id!", c.kind as "kind!: DeliveryKind",
                  c.payload as "payload!",
                  c.attempt_count as "attempt_count!", c.created_at as "created_at!",
                  case c.kind when 'during_call' then s.during_call_url else s.after_call_url end as url,
                  s.signing_secret as "signing_secret?",
                  case when s.previous_secret_expires_at > now() then s.previous_signing_secret end
                    as "previous_signing_secret?",
                  $2::uuid as "lease_token!"
             from claimed c
             left join scenarios s on s.id = c.scenario_id"#,
        limit,
        token,
        lease.as_secs_f64(),
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// What became of a claimed delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A 2xx came back.
    Delivered,
    /// Try again after this delay.
    Retry(Duration),
    /// The schedule is exhausted.
    Failed,
    /// Not sent and never will be (URL removed, scenario deleted): the reason.
    Cancelled(CancelReason),
    /// Not sent now (its destination is busy); due again after this delay.
    /// No attempt is recorded.
    Deferred(Duration),
}

/// One HTTP attempt, for `delivery_attempts`.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub url: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

/// A claimed delivery's result, to be written by [`complete`].
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: Uuid,
    pub lease_token: Uuid,
    pub outcome: Outcome,
    pub attempt: Option<AttemptRecord>,
}

/// What [`complete`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// Deliveries still held by their claim, and so updated.
    pub updated: u64,
    /// After-call deliveries that were waiting for a during-call delivery
    /// finished here, and are due now: claims should look again.
    pub unblocked: u64,
}

/// Writes many completions in one transaction: the attempt rows and each
/// delivery's new state (one statement), then, if a during-call delivery
/// became final, the after-call deliveries that waited for it are made due.
///
/// Two statements, so the second sees an after-call delivery that an end
/// event added while the first waited for the during-call row's lock (the
/// end holds it while it decides to wait): one statement would read the
/// table as it was before that end committed.
pub async fn complete(pool: &PgPool, batch: &[Completion]) -> Result<Completed, StoreError> {
    let n = batch.len();
    let mut ids = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut retry_in = Vec::with_capacity(n);
    let mut attempted = Vec::with_capacity(n);
    let mut urls = Vec::with_capacity(n);
    let mut started = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    for c in batch {
        let (state, delay) = match &c.outcome {
            Outcome::Delivered => (DeliveryState::Delivered, None),
            Outcome::Retry(d) | Outcome::Deferred(d) => {
                (DeliveryState::Pending, Some(d.as_secs_f64()))
            }
            Outcome::Failed => (DeliveryState::Failed, None),
            Outcome::Cancelled(_) => (DeliveryState::Cancelled, None),
        };
        ids.push(c.id);
        tokens.push(c.lease_token);
        states.push(state.as_str());
        retry_in.push(delay);
        attempted.push(c.attempt.is_some());
        let a = c.attempt.as_ref();
        urls.push(a.map(|a| a.url.as_str()));
        started.push(a.map(|a| a.started_at));
        durations.push(a.map(|a| a.duration_ms));
        statuses.push(a.and_then(|a| a.response_status));
        bodies.push(a.and_then(|a| a.response_body.as_deref()));
        errors.push(match &c.outcome {
            Outcome::Cancelled(reason) => Some(reason.as_str()),
            _ => a.and_then(|a| a.error.as_deref()),
        });
    }
    let mut tx = pool.begin().await?;
    let row = sqlx::query!(
        r#"with input as (
               select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::float8[], $5::bool[], $6::text[],
                                    $7::timestamptz[], $8::int4[], $9::int4[], $10::text[], $11::text[])
                 as t(id, lease_token, state, retry_in, attempted, url, started_at, duration_ms,
                      response_status, response_body, error)
           ), upd as (
               update deliveries d
                  set state = i.state,
                      attempt_count = d.attempt_count + i.attempted::int,
                      next_attempt_at = case when i.state = 'pending'
                                             then now() + make_interval(secs => i.retry_in) end,
                      last_status = case when i.attempted then i.response_status else d.last_status end,
                      last_error = case when i.attempted or i.error is not null then i.error else d.last_error end,
                      delivered_at = case when i.state = 'delivered' then now() else d.delivered_at end,
                      lease_token = null,
                      updated_at = now()
                 from input i
                where d.id = i.id and d.lease_token = i.lease_token
            returning d.id, d.attempt_count, d.call_id, d.kind, d.state
           ), ins as (
               insert into delivery_attempts
                      (delivery_id, attempt, url, started_at, duration_ms, response_status, response_body, error)
               select u.id, u.attempt_count, i.url, i.started_at, i.duration_ms, i.response_status,
                      i.response_body, i.error
                 from upd u join input i on i.id = u.id
                where i.attempted
           )
           select (select count(*) from upd) as "updated!",
                  array(select id from upd where kind = 'during_call' and state <> 'pending')
                    as "finished!""#,
        &ids,
        &tokens,
        &states as _,
        &retry_in as _,
        &attempted,
        &urls as _,
        &started as _,
        &durations as _,
        &statuses as _,
        &bodies as _,
        &errors as _,
    )
    .fetch_one(&mut *tx)
    .await?;
    let unblocked = unblock(&mut tx, &row.finished).await?;
    tx.commit().await?;
    Ok(Completed {
        updated: row.updated as u64,
        unblocked,
    })
}

/// Makes the after-call deliveries waiting for these (now final) during-call
/// deliveries due now; returns how many.
pub(crate) async fn unblock(tx: &mut PgConnection, finished: &[Uuid]) -> Result<u64, StoreError> {
    if finished.is_empty() {
        return Ok(0);
    }
    let r = sqlx::query!(
        "update deliveries
            set blocked_by = null, next_attempt_at = now(), updated_at = now()
          where blocked_by = any($1)",
        finished
    )
    .execute(&mut *tx)
    .await?;
    Ok(r.rows_affected())
}

/// Makes the after-call deliveries of these calls wait again for their
/// during-call delivery where that one is pending (after an operator's
/// requeue, which may have made both pending).
pub(crate) async fn block_behind_during_call(
    tx: &mut PgConnection,
    call_ids: &[String],
) -> Result<(), StoreError> {
    sqlx::query!(
        "update deliveries a
            set blocked_by = p.id, next_attempt_at = null, updated_at = now()
           from deliveries p
          where a.call_id = any($1) and a.kind = 'after_call' and a.state = 'pending'
            and a.lease_token is null and a.blocked_by is null
            and p.call_id = a.call_id and p.kind = 'during_call' and p.state = 'pending'",
        call_ids
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Cancels a scenario's pending deliveries of these kinds (its URL was
/// removed, or it was deleted), and makes due the after-call deliveries that
/// waited for a during-call one cancelled here. A delivery being sent right
/// now (leased, lease running) is left to its worker: it is recorded, and
/// cancelled at its next claim, which finds the URL gone. Returns the kind
/// of each delivery cancelled.
pub(crate) async fn cancel_pending(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    kinds: &[DeliveryKind],
    reason: CancelReason,
) -> Result<Vec<DeliveryKind>, StoreError> {
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let cancelled = sqlx::query!(
        r#"update deliveries
              set state = 'cancelled', last_error = $3, next_attempt_at = null, blocked_by = null,
                  lease_token = null, updated_at = now()
            where scenario_id = $1 and state = 'pending' and kind = any($2)
              and (lease_token is null or next_attempt_at <= now())
        returning id, kind as "kind: DeliveryKind""#,
        scenario_id,
        &kinds as &[&str],
        reason.as_str(),
    )
    .fetch_all(&mut *tx)
    .await?;
    let during: Vec<Uuid> = cancelled
        .iter()
        .filter(|c| c.kind == DeliveryKind::DuringCall)
        .map(|c| c.id)
        .collect();
    if unblock(tx, &during).await? > 0 {
        notify(&mut *tx).await?;
    }
    Ok(cancelled.into_iter().map(|c| c.kind).collect())
}

/// Wakes every dispatcher (`NOTIFY`; inside a transaction, sent when it
/// commits).
pub async fn notify(e: impl PgExecutor<'_>) -> Result<(), StoreError> {
    sqlx::query!("select pg_notify($1, '')", crate::NOTIFY_CHANNEL)
        .execute(e)
        .await?;
    Ok(())
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
