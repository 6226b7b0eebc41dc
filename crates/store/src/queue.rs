//! The delivery queue: claim due deliveries under a lease, complete them in
//! batches, release leases at shutdown.
//!
//! A claim is a short transaction (`FOR UPDATE SKIP LOCKED`) that stamps a
//! `lease_token` and pushes `next_attempt_at` to the lease's end; the HTTP call
//! then happens outside any transaction. If the process dies, the row simply
//! becomes due again when the lease runs out. Completion only applies while
//! the row still carries the claim's token, so a worker whose lease was taken
//! over cannot overwrite the new owner's result.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

use crate::StoreError;

/// A claimed delivery with what sending it needs, read at claim time: the
/// scenario's URL for this kind as it is now (null = removed) and its secret.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub call_id: String,
    pub kind: String,
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

/// Hands deliveries from ingest straight to this process's dispatcher.
///
/// When the API and the dispatcher share a process, ingest inserts a new
/// delivery already leased (the lease a claim would stamp) while the
/// dispatcher has free workers, and once the ingest commits passes the row
/// over in memory: it is sent without a claim, a `NOTIFY` or a poll, one
/// write fewer per delivery. The rest are inserted due now, for claims.
///
/// A handed-off row waits for a worker slot like a claimed one, so at most
/// `concurrency` deliveries are ever being sent and unrecorded; up to as
/// many again may wait for a slot in memory (not yet sent, so a crash only
/// delays them by the lease), and one that waits too long goes back to the
/// queue. Should the process die, a handed-off row becomes due when its
/// lease runs out, like a claimed one.
#[derive(Clone, Debug)]
pub struct Handoff {
    slots: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Handed>,
    lease: Duration,
    /// Rows handed over and still waiting for a slot.
    waiting: Arc<AtomicUsize>,
    /// How many may wait.
    room: usize,
}

/// A delivery handed over, and when: it may wait for a worker only so long
/// from then, whatever waits before it.
#[derive(Debug)]
pub struct Handed {
    pub row: Claimed,
    pub at: tokio::time::Instant,
}

/// The dispatcher's side of a [`Handoff`]: its worker slots (which claims
/// take too) and the deliveries handed to it.
#[derive(Debug)]
pub struct HandoffInbox {
    pub slots: Arc<Semaphore>,
    pub rx: mpsc::UnboundedReceiver<Handed>,
    waiting: Arc<AtomicUsize>,
}

impl HandoffInbox {
    /// A handed-off row has a slot now, or went back to the queue.
    pub fn taken(&self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A hand-off to a dispatcher of `concurrency` workers leasing for `lease`.
pub fn handoff(concurrency: usize, lease: Duration) -> (Handoff, HandoffInbox) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let (tx, rx) = mpsc::unbounded_channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        Handoff {
            slots: slots.clone(),
            tx,
            lease,
            waiting: waiting.clone(),
            room: concurrency,
        },
        HandoffInbox { slots, rx, waiting },
    )
}

impl Handoff {
    /// How many new deliveries to hand off now: the free workers and the
    /// room left to wait for one (none once the dispatcher has stopped; it
    /// closes its slots).
    pub(crate) fn budget(&self) -> usize {
        if self.slots.is_closed() {
            0
        } else {
            (self.slots.available_permits() + self.room)
                .saturating_sub(self.waiting.load(Ordering::Acquire))
        }
    }

    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// Passes committed, leased deliveries to the dispatcher. Any it can no
    /// longer take (it stopped meanwhile) go back to the queue, due now.
    pub(crate) async fn deliver(&self, pool: &PgPool, handed: Vec<Claimed>) {
        let mut back = Vec::new();
        let at = tokio::time::Instant::now();
        for row in handed {
            self.waiting.fetch_add(1, Ordering::AcqRel);
            if let Err(mpsc::error::SendError(h)) = self.tx.send(Handed { row, at }) {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                back.push(h.row);
            }
        }
        if back.is_empty() {
            return;
        }
        let ids: Vec<Uuid> = back.iter().map(|r| r.id).collect();
        let tokens: Vec<Uuid> = back.iter().map(|r| r.lease_token).collect();
        if let Err(e) = release(pool, &ids, &tokens).await {
            tracing::warn!(error = %e, count = ids.len(), "could not hand back deliveries; they are sent when their lease runs out");
        }
    }
}

/// Claims up to `limit` due deliveries for `lease`. An after-call delivery is
/// not due while its call's during-call delivery is still pending, so it never
/// overtakes it.
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
                  and (d.kind = 'during_call' or not exists (
                        select 1 from deliveries p
                         where p.call_id = d.call_id and p.kind = 'during_call' and p.state = 'pending'))
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
           select c.id as "id!", c.call_id as "call_id!", c.kind as "kind!", c.payload as "payload!",
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
    Cancelled(&'static str),
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
    /// finished here: claims should look again.
    pub unblocked: u64,
}

/// Writes many completions in one statement (one transaction): the attempt
/// rows and each delivery's new state.
pub async fn complete(
    e: impl PgExecutor<'_>,
    batch: &[Completion],
) -> Result<Completed, StoreError> {
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
            Outcome::Delivered => ("delivered", None),
            Outcome::Retry(d) | Outcome::Deferred(d) => ("pending", Some(d.as_secs_f64())),
            Outcome::Failed => ("failed", None),
            Outcome::Cancelled(_) => ("cancelled", None),
        };
        ids.push(c.id);
        tokens.push(c.lease_token);
        states.push(state);
        retry_in.push(delay);
        attempted.push(c.attempt.is_some());
        let a = c.attempt.as_ref();
        urls.push(a.map(|a| a.url.as_str()));
        started.push(a.map(|a| a.started_at));
        durations.push(a.map(|a| a.duration_ms));
        statuses.push(a.and_then(|a| a.response_status));
        bodies.push(a.and_then(|a| a.response_body.as_deref()));
        errors.push(match &c.outcome {
            Outcome::Cancelled(reason) => Some(*reason),
            _ => a.and_then(|a| a.error.as_deref()),
        });
    }
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
                  (select count(*)
                     from upd u
                     join deliveries a on a.call_id = u.call_id and a.kind = 'after_call'
                    where u.kind = 'during_call' and u.state <> 'pending' and a.state = 'pending')
                    as "unblocked!""#,
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
    .fetch_one(e)
    .await?;
    Ok(Completed {
        updated: row.updated as u64,
        unblocked: row.unblocked as u64,
    })
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
/// long a dispatcher with nothing to do may sleep.
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

/// Wakes dispatchers (through `NOTIFY`) after deliveries were queued.
///
/// The `NOTIFY` is sent after the ingest transaction committed, from one
/// task, and signals that arrive while one is in flight fold into the next:
/// a `NOTIFY` inside the ingest transaction would make Postgres serialise
/// those commits on its notification queue lock, which caps ingest at one
/// WAL flush at a time.
#[derive(Clone, Debug)]
pub struct Notifier {
    /// Room for one pending signal: more fold into it.
    signal: mpsc::Sender<()>,
}

impl Notifier {
    /// Starts the notifying task. It ends, releasing its hold on the pool,
    /// once every `Notifier` is dropped.
    pub fn spawn(pool: PgPool) -> Self {
        let (signal, mut waiting) = mpsc::channel(1);
        tokio::spawn(async move {
            while waiting.recv().await.is_some() {
                if let Err(e) = sqlx::query!("select pg_notify($1, '')", crate::NOTIFY_CHANNEL)
                    .execute(&pool)
                    .await
                {
                    // Dispatchers poll as a fallback; nothing is lost.
                    tracing::debug!(error = %e, "could not notify dispatchers");
                }
            }
        });
        Self { signal }
    }

    /// Asks for a `NOTIFY` soon; cheap, never blocks.
    pub fn wake(&self) {
        // Full: a signal is pending already and covers this one.
        let _ = self.signal.try_send(());
    }
}
