//! Endpoint health as stored (`endpoints`): what attempts' results do to it,
//! what its transitions do to its deliveries, operators' pauses and
//! enables, probes, and the operator events.
//!
//! The state machine is `callhook_core::health`; this module applies it
//! under the endpoint's row lock, in the transaction that records the
//! attempts, so each transition happens once (and its operator event is
//! queued once) however many dispatchers record results at the same time.
//!
//! - → `paused` or `disabled`: the endpoint's pending deliveries are parked
//!   (no due time, out of the claims' way); after-call deliveries waiting
//!   for a during-call delivery of this endpoint stop waiting.
//! - → `healthy` (a probe got through, or an operator enabled it): its
//!   parked deliveries drain, oldest first, `drain_per_second` at most;
//!   after-call ones whose during-call delivery is pending wait for it again.

use callhook_core::{DeliveryKind, EndpointState, Health, HealthPolicy, Observed, Transition};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

mod control;
mod effects;
mod views;

pub(crate) use control::enable_in;
pub use control::{enable, pause, take_probes, Switched};
use effects::{drain, hold, park_these, queue_event};
pub use views::{
    count_by_state, endpoint, list, of_scenarios, set_limits, EndpointLimits, EndpointRow,
};

/// How health is applied.
#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    pub policy: HealthPolicy,
    /// Queue an operator event for each transition (an operator webhook URL
    /// is configured).
    pub operator_events: bool,
    /// How fast a recovered endpoint's waiting deliveries are made due.
    pub drain_per_second: u32,
    /// An endpoint's in-flight cap when its scenario sets none (what a
    /// slowed-down cap grows back to).
    pub endpoint_cap: i32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            policy: HealthPolicy::default(),
            operator_events: false,
            drain_per_second: 50,
            endpoint_cap: callhook_core::DEFAULT_ENDPOINT_MAX_IN_FLIGHT,
        }
    }
}

/// One attempt's result for its endpoint.
#[derive(Debug, Clone)]
pub struct Seen<'a> {
    pub delivery_id: Uuid,
    pub scenario_id: Uuid,
    pub kind: DeliveryKind,
    pub seen: &'a Observed,
}

/// An endpoint that changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub scenario_id: Uuid,
    pub kind: DeliveryKind,
    pub transition: Transition,
    pub last_error: Option<String>,
}

/// What [`observe`] did.
#[derive(Debug, Default)]
pub(crate) struct Observation {
    pub transitions: Vec<Changed>,
    /// Deliveries made due (drained, unblocked, operator events).
    pub woken: u64,
}

/// An endpoint row.
struct Row {
    state: EndpointState,
    since: DateTime<Utc>,
    consecutive_failures: i32,
    failing_since: Option<DateTime<Utc>>,
    last_success_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    next_probe_at: Option<DateTime<Utc>>,
}

impl Row {
    fn health(&self) -> Health {
        Health {
            state: self.state,
            since: self.since,
            consecutive_failures: self.consecutive_failures,
            failing_since: self.failing_since,
            last_success_at: self.last_success_at,
            last_error: self.last_error.clone(),
            next_probe_at: self.next_probe_at,
        }
    }
}

/// Locks an endpoint's row and reads it (`None`: its scenario is gone).
async fn lock(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    kind: DeliveryKind,
) -> Result<Option<Row>, StoreError> {
    Ok(sqlx::query_as!(
        Row,
        r#"select state as "state: EndpointState", since,
                  consecutive_failures, failing_since, last_success_at, last_error, next_probe_at
             from endpoints where scenario_id = $1 and kind = $2
              for update"#,
        scenario_id,
        kind as _,
    )
    .fetch_optional(&mut *tx)
    .await?)
}

async fn save(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    kind: DeliveryKind,
    h: &Health,
) -> Result<(), StoreError> {
    sqlx::query!(
        "update endpoints
            set state = $3, since = $4, consecutive_failures = $5, failing_since = $6,
                last_success_at = $7, last_error = $8, next_probe_at = $9, updated_at = now()
          where scenario_id = $1 and kind = $2",
        scenario_id,
        kind as _,
        h.state as _,
        h.since,
        h.consecutive_failures,
        h.failing_since,
        h.last_success_at,
        h.last_error,
        h.next_probe_at,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Takes attempts' results (in the order they came) into their endpoints'
/// health, and does what the transitions imply; makes due the after-call
/// deliveries that waited for the `finished` during-call deliveries. Endpoints are locked in
/// (scenario, kind) order, so concurrent recorders never deadlock.
pub(crate) async fn observe(
    tx: &mut PgConnection,
    seen: &[Seen<'_>],
    finished: &[Uuid],
    settings: &HealthSettings,
) -> Result<Observation, StoreError> {
    let mut out = Observation::default();
    if seen.is_empty() && finished.is_empty() {
        return Ok(out);
    }
    let mut endpoints: Vec<(Uuid, DeliveryKind)> =
        seen.iter().map(|s| (s.scenario_id, s.kind)).collect();
    endpoints.sort_by_key(|(s, k)| (*s, k.as_str()));
    endpoints.dedup();
    let now = Utc::now();
    let (unblocked, endpoints) = first_look(tx, seen, endpoints, finished).await?;
    out.woken += unblocked;
    for (scenario_id, kind) in endpoints {
        let Some(row) = lock(tx, scenario_id, kind).await? else {
            continue;
        };
        let before = row.health();
        let mut h = before.clone();
        let mut moves = Vec::new();
        let mine: Vec<&Seen<'_>> = seen
            .iter()
            .filter(|s| s.scenario_id == scenario_id && s.kind == kind)
            .collect();
        for s in &mine {
            moves.extend(h.observe(s.seen, now, &settings.policy));
        }
        if moves.last().is_some_and(|t| t.to == EndpointState::Paused) {
            h.arm_probe(now, &settings.policy);
        }
        if h != before {
            save(tx, scenario_id, kind, &h).await?;
        }
        let (made_due, events) = settle(tx, scenario_id, kind, &moves, settings).await?;
        out.woken += made_due + events;
        if h.state.holds_deliveries() {
            // This batch's own deliveries (a failed probe, a retry decided
            // just before the pause) wait with the rest, their schedule
            // unspent: never `failed` while the receiver is away.
            let ids: Vec<Uuid> = mine.iter().map(|s| s.delivery_id).collect();
            park_these(tx, &ids).await?;
        }
        for t in moves {
            out.transitions.push(Changed {
                scenario_id,
                kind,
                transition: t,
                last_error: h.last_error.clone(),
            });
        }
    }
    Ok(out)
}

/// The common case costs one statement and no lock: a healthy endpoint
/// with no failure counted that saw only successes changes nothing but its
/// `last_success_at`, refreshed at most once a second. The same statement
/// makes due the after-call deliveries that waited for the during-call
/// deliveries `finished` (final now): it runs after the completion's
/// update, so it sees an after-call delivery an end event added while that
/// update waited for the during-call row's lock. Returns how many were made
/// due, and the endpoints that need the full look (under their row lock).
async fn first_look(
    tx: &mut PgConnection,
    seen: &[Seen<'_>],
    endpoints: Vec<(Uuid, DeliveryKind)>,
    finished: &[Uuid],
) -> Result<(u64, Vec<(Uuid, DeliveryKind)>), StoreError> {
    let (ids, kinds): (Vec<Uuid>, Vec<&str>) =
        endpoints.iter().map(|(s, k)| (*s, k.as_str())).unzip();
    let (ok_ids, ok_kinds): (Vec<Uuid>, Vec<&str>) = endpoints
        .iter()
        .filter(|(s, k)| only_successes(seen, *s, *k))
        .map(|(s, k)| (*s, k.as_str()))
        .unzip();
    let row = sqlx::query!(
        r#"with input as (select * from unnest($1::uuid[], $2::text[]) as t(scenario_id, kind)),
                fresh as (
                    update endpoints e
                       set last_success_at = now(), updated_at = now()
                      from input i
                     where e.scenario_id = i.scenario_id and e.kind = i.kind
                       and e.state = 'healthy' and e.consecutive_failures = 0
                       and e.last_success_at >= now() - interval '1 second' is not true
                       and (e.scenario_id, e.kind) in (select * from unnest($3::uuid[], $4::text[]))
                ),
                unblocked as (
                    update deliveries
                       set blocked_by = null, next_attempt_at = greatest(now(), recording_due_at),
                           updated_at = now()
                     where blocked_by = any($5)
                 returning 1
                )
           select (select count(*) from unblocked) as "unblocked!",
                  array(select e.scenario_id::text || '/' || e.kind
                          from endpoints e join input i on e.scenario_id = i.scenario_id and e.kind = i.kind
                         where e.state = 'healthy' and e.consecutive_failures = 0) as "quiet!""#,
        &ids,
        &kinds as &[&str],
        &ok_ids,
        &ok_kinds as &[&str],
        finished,
    )
    .fetch_one(&mut *tx)
    .await?;
    let look = endpoints
        .into_iter()
        .filter(|(s, k)| {
            !(only_successes(seen, *s, *k) && row.quiet.contains(&format!("{s}/{}", k.as_str())))
        })
        .collect();
    Ok((row.unblocked as u64, look))
}

fn only_successes(seen: &[Seen<'_>], scenario_id: Uuid, kind: DeliveryKind) -> bool {
    seen.iter()
        .filter(|s| s.scenario_id == scenario_id && s.kind == kind)
        .all(|s| *s.seen == Observed::Success)
}

/// What transitions do to the endpoint's deliveries, and their operator
/// events. Returns how many deliveries were made due (drained, or no longer
/// waiting for a held during-call delivery) and how many events were queued.
async fn settle(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    kind: DeliveryKind,
    moves: &[Transition],
    settings: &HealthSettings,
) -> Result<(u64, u64), StoreError> {
    let (Some(first), Some(last)) = (moves.first(), moves.last()) else {
        return Ok((0, 0));
    };
    let mut made_due = 0;
    if last.to.holds_deliveries() && !first.from.holds_deliveries() {
        made_due += hold(tx, scenario_id, kind).await?;
    } else if last.to == EndpointState::Healthy && first.from.holds_deliveries() {
        made_due += drain(tx, scenario_id, kind, settings.drain_per_second).await?;
    }
    let mut events = 0;
    if settings.operator_events {
        for t in moves {
            queue_event(tx, scenario_id, kind, *t).await?;
            events += 1;
        }
    }
    Ok((made_due, events))
}
