//! Recording what became of claimed deliveries: their new state, the attempt
//! rows, what that unblocks, and their endpoints' health.

use std::time::Duration;

use callhook_core::{CancelReason, DeliveryKind, DeliveryState, HeldReason, Observed};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::health::{self, Changed, HealthSettings};
use crate::StoreError;

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
    /// Not sent: its endpoint is paused or disabled. It waits, parked, its
    /// retry schedule unspent, until the endpoint recovers or is enabled.
    Parked,
    /// Not sent, because of something an operator must fix (`reason` goes
    /// to `last_error`, e.g. a damaged signing secret); looked at again
    /// after the delay, its retry schedule unspent.
    Held {
        reason: HeldReason,
        retry_in: Duration,
    },
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
    /// The endpoint the attempt tells about (a scenario's URL of a kind),
    /// with what it told; `None` when nothing was sent to one.
    pub health: Option<(Uuid, DeliveryKind, Observed)>,
}

/// What [`complete`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completed {
    /// Deliveries still held by their claim, and so updated.
    pub updated: u64,
    /// Deliveries made due here that were not before (after-call ones no
    /// longer waiting, a recovered endpoint's, operator events), and
    /// endpoints with due work whose in-flight room these results freed:
    /// claims should look again.
    pub woken: u64,
    /// Endpoints that changed state.
    pub transitions: Vec<Changed>,
}

/// The completion's transaction: it finds each row by its primary key,
/// whatever the statistics say. Its plan is cached per connection; made while
/// `deliveries` was young and never analyzed (a fresh install, the bench's
/// fresh database), it was a sequential scan joined by hash, kept as the table
/// grew: 3–7 ms a completion at 8,000 rows (`auto_explain`). The other
/// statements here touch a few rows by key too. Sent with `BEGIN`, so it costs
/// no round trip.
const COMPLETION_BEGIN: &str = "begin; set local enable_seqscan = off; \
     set local enable_hashjoin = off; set local enable_mergejoin = off";

/// Writes many completions in one transaction: the attempt rows and each
/// delivery's new state (one statement); then the endpoints' health takes
/// the attempts' results, and the after-call deliveries that waited for a
/// during-call delivery now final are made due (one more statement in the
/// common case, see `health::observe`).
///
/// Stays whole: one transaction of two statements, and the arrays it binds
/// are built here, one per column.
pub async fn complete(
    pool: &PgPool,
    batch: &[Completion],
    settings: &HealthSettings,
) -> Result<Completed, StoreError> {
    let n = batch.len();
    let mut ids = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut parked = Vec::with_capacity(n);
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
            Outcome::Retry(d) | Outcome::Deferred(d) | Outcome::Held { retry_in: d, .. } => {
                (DeliveryState::Pending, Some(d.as_secs_f64()))
            }
            Outcome::Failed => (DeliveryState::Failed, None),
            Outcome::Cancelled(_) => (DeliveryState::Cancelled, None),
            Outcome::Parked => (DeliveryState::Pending, None),
        };
        ids.push(c.id);
        tokens.push(c.lease_token);
        states.push(state.as_str());
        parked.push(c.outcome == Outcome::Parked);
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
            Outcome::Held { reason, .. } => Some(reason.as_str()),
            _ => a.and_then(|a| a.error.as_deref()),
        });
    }
    let mut tx = pool.begin_with(COMPLETION_BEGIN).await?;
    let row = sqlx::query!(
        r#"with input as (
               select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::float8[], $5::bool[], $6::text[],
                                    $7::timestamptz[], $8::int4[], $9::int4[], $10::text[], $11::text[],
                                    $12::bool[])
                 as t(id, lease_token, state, retry_in, attempted, url, started_at, duration_ms,
                      response_status, response_body, error, park)
           ), upd as (
               update deliveries d
                  set state = i.state,
                      parked = i.park,
                      attempt_count = d.attempt_count + i.attempted::int,
                      next_attempt_at = case when i.state = 'pending' and not i.park
                                             then now() + make_interval(secs => i.retry_in) end,
                      last_status = case when i.attempted then i.response_status else d.last_status end,
                      last_error = case when i.attempted or i.error is not null then i.error else d.last_error end,
                      delivered_at = case when i.state = 'delivered' then now() else d.delivered_at end,
                      lease_token = null,
                      updated_at = now()
                 from input i
                where d.id = i.id and d.lease_token = i.lease_token
            -- the attempt's columns ride along: joining the updated rows
            -- back to the input compared every pair (no hash joins here)
            returning d.id, d.attempt_count, d.call_id, d.kind, d.state, d.scenario_id,
                      i.attempted, i.url, i.started_at, i.duration_ms, i.response_status,
                      i.response_body, i.error
           ), ins as (
               insert into delivery_attempts
                      (delivery_id, attempt, url, started_at, duration_ms, response_status, response_body, error)
               select id, attempt_count, url, started_at, duration_ms, response_status, response_body, error
                 from upd
                where attempted
           )
           select array(select id from upd) as "updated!",
                  array(select id from upd where kind = 'during_call' and state <> 'pending')
                    as "finished!",
                  -- endpoints with due work that these results freed in-flight room for
                  (select count(*) from endpoint_queue q
                    where q.due_at <= now()
                      and (q.scenario_id, q.kind) in (select delivery_endpoint(scenario_id), kind from upd))
                    as "waiting!",
                  -- whether any of their endpoints runs below its maximum cap
                  -- (else only a slow-down signal has a cap to change)
                  exists (select 1 from endpoints e
                           where e.cap is not null
                             and (e.scenario_id, e.kind) in (select scenario_id, kind from upd))
                    as "capped!""#,
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
        &parked,
    )
    .fetch_one(&mut *tx)
    .await?;
    // Health counts only attempts whose results were recorded here (a
    // worker whose lease was taken over tells nothing new).
    let recorded: std::collections::HashSet<Uuid> = row.updated.iter().copied().collect();
    let observed: Vec<health::Seen<'_>> = batch
        .iter()
        .filter(|c| recorded.contains(&c.id))
        .filter_map(|c| {
            let (scenario_id, kind, seen) = c.health.as_ref()?;
            Some(health::Seen {
                delivery_id: c.id,
                scenario_id: *scenario_id,
                kind: *kind,
                seen,
            })
        })
        .collect();
    // A delivery whose host was busy made no attempt: it slows its endpoint
    // down but tells nothing of its health.
    let attempts: Vec<health::Seen<'_>> = observed
        .iter()
        .filter(|s| s.seen.is_attempt())
        .cloned()
        .collect();
    let health = health::observe(&mut tx, &attempts, &row.finished, settings).await?;
    super::congestion::adjust_caps(&mut tx, &observed, row.capped, settings.endpoint_cap).await?;
    tx.commit().await?;
    Ok(Completed {
        updated: row.updated.len() as u64,
        woken: health.woken + row.waiting as u64,
        transitions: health.transitions,
    })
}
