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

use callhook_core::{DeliveryKind, EndpointState, Header, StoredSecret};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::calls::{IngestScenario, NewDelivery};
use crate::StoreError;

mod claim;
mod complete;
mod congestion;
mod order;

pub use claim::{claim, ClaimLimits};
pub use complete::{complete, AttemptRecord, Completed, Completion, Outcome};
pub use order::expire_held;
pub(crate) use order::{block_behind_during_call, cancel_pending};

/// A `query_as!` of [`Claimed`] rows: the one column list both ways of
/// taking a delivery share (the claim, `claim.rs`, and the probes,
/// `health/control.rs`), so a field is added once; the Rust hand-off of a
/// fresh start is [`Claimed::handed_off`].
///
/// The statement is `$with`, ending in the `update deliveries d` that leases
/// the rows (this adds its `returning`), then `$then` (more `returning`
/// columns if it starts with a comma, the rest of the CTEs), then the select of a row from `c`, the leased rows, and `s`, their
/// scenario, named by `$from`: `lease_token` is the token's bind (`$n`),
/// `endpoint_state` and `probe` are SQL for those columns. Pieces are string
/// literals, as `query_as!` needs; the names in the column overrides
/// (`DeliveryKind`, `StoredSecret`, `EndpointState`) resolve where it is used.
macro_rules! query_claimed {
    (
        $with:literal,
        $then:literal,
        lease_token = $token:literal,
        endpoint_state = $state:literal,
        probe = $probe:literal,
        $from:literal,
        $($arg:expr),+ $(,)?
    ) => {
        sqlx::query_as!(
            $crate::queue::Claimed,
            $with
                + "
            returning d.id, d.call_id, d.kind, d.payload, d.attempt_count, d.created_at, d.scenario_id,
                      d.expires_at"
                + $then
                + r#"
           select c.id as "id!", c.call_id, c.kind as "kind!: DeliveryKind", c.payload as "payload!",
                  c.attempt_count as "attempt_count!", c.created_at as "created_at!",
                  case c.kind when 'during_call' then s.during_call_url else s.after_call_url end as url,
                  s.signing_secret as "signing_secret?: StoredSecret",
                  case when overlap_running(s.previous_secret_expires_at) then s.previous_signing_secret end
                    as "previous_signing_secret?: StoredSecret",
                  "#
                + $token
                + r#"::uuid as "lease_token!", c.scenario_id,
                  "#
                + $state
                + r#" as "endpoint_state?: EndpointState", "#
                + $probe
                + r#" as "probe!",
                  case c.kind when 'during_call' then s.during_call_headers
                              when 'after_call' then s.after_call_headers end
                    as "headers?: Json<Vec<Header>>",
                  c.expires_at
             "#
                + $from,
            $($arg),+
        )
    };
}
pub(crate) use query_claimed;

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
    /// The scenario's headers for this kind (secret values stored sealed);
    /// null for an operator event.
    pub headers: Option<Json<Vec<Header>>>,
    /// A during-call delivery whose call has ended: not sent after this
    /// moment, but cancelled `call_ended`.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Claimed {
    /// A start's during-call delivery, inserted leased for this process's
    /// dispatcher (the hand-off, `calls/start.rs`): what [`query_claimed!`]
    /// reads for a claimed one, taken from the start's scenario row instead;
    /// its first attempt, not a probe.
    pub(crate) fn handed_off(
        scenario: &IngestScenario,
        call_id: &str,
        new: NewDelivery,
        lease_token: Uuid,
    ) -> Self {
        Self {
            id: new.delivery.id,
            call_id: Some(call_id.to_owned()),
            kind: DeliveryKind::DuringCall,
            payload: new.payload,
            attempt_count: 0,
            created_at: new.created_at,
            url: scenario.during_call_url.clone(),
            signing_secret: Some(scenario.signing_secret.clone()),
            previous_signing_secret: scenario.previous_signing_secret.clone(),
            lease_token,
            scenario_id: Some(scenario.id),
            endpoint_state: Some(scenario.during_state),
            probe: false,
            headers: Some(scenario.during_call_headers.clone()),
            expires_at: None,
        }
    }
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

/// When the next endpoint in the round falls due, if it is in the future: how
/// long a dispatcher with nothing to do may sleep. (Blocked after-call
/// deliveries have no due time; what unblocks them wakes the dispatchers.)
pub async fn next_due_in(e: impl PgExecutor<'_>) -> Result<Option<Duration>, StoreError> {
    let secs = sqlx::query_scalar!(
        r#"select extract(epoch from min(due_at) - now())::float8 as "secs"
             from endpoint_queue
            where due_at > now()"#
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

/// How long the oldest due delivery of each priority class has waited
/// (classes with nothing due are absent): one short index read per due
/// endpoint and class.
pub async fn oldest_due_by_class(
    e: impl PgExecutor<'_>,
) -> Result<Vec<(callhook_core::PriorityClass, f64)>, StoreError> {
    let rows = sqlx::query!(
        r#"select c.class as "class!", extract(epoch from now() - min(m.due))::float8 as "age!"
             from (values (0::int2), (1::int2), (2::int2), (3::int2)) as c(class)
             cross join (values (false), (true)) as l(leased)
             cross join lateral (
                 select (select d.next_attempt_at from deliveries d
                          where delivery_endpoint(d.scenario_id) = q.scenario_id and d.kind = q.kind
                            and d.state = 'pending' and (d.lease_token is not null) = l.leased
                            and delivery_class(d.kind, d.attempt_count, d.requeued) = c.class
                            and d.next_attempt_at <= now()
                          order by d.next_attempt_at limit 1) as due
                   from endpoint_queue q
                  where q.due_at <= now()
             ) m
            where m.due is not null
            group by c.class"#
    )
    .fetch_all(e)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((callhook_core::PriorityClass::from_number(r.class)?, r.age)))
        .collect())
}
