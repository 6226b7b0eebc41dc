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

use std::time::Duration;

use callhook_core::health::{event_payload, EventData};
use callhook_core::{
    DeliveryKind, EndpointState, Health, HealthPolicy, Observed, StoredSecret, Transition,
};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::queue::Claimed;
use crate::StoreError;

/// How health is applied.
#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    pub policy: HealthPolicy,
    /// Queue an operator event for each transition (an operator webhook URL
    /// is configured).
    pub operator_events: bool,
    /// How fast a recovered endpoint's waiting deliveries are made due.
    pub drain_per_second: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            policy: HealthPolicy::default(),
            operator_events: false,
            drain_per_second: 50,
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
                       set blocked_by = null, next_attempt_at = now(), updated_at = now()
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

/// Parks the endpoint's pending deliveries (those not being sent right
/// now), and lets after-call deliveries waiting for its during-call ones go.
async fn hold(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    kind: DeliveryKind,
) -> Result<u64, StoreError> {
    sqlx::query!(
        "update deliveries
            set parked = true, next_attempt_at = null, updated_at = now()
          where scenario_id = $1 and kind = $2 and state = 'pending' and not parked
            and blocked_by is null and (lease_token is null or next_attempt_at <= now())",
        scenario_id,
        kind as _,
    )
    .execute(&mut *tx)
    .await?;
    if kind != DeliveryKind::DuringCall {
        return Ok(0);
    }
    let r = sqlx::query!(
        "update deliveries a
            set blocked_by = null, next_attempt_at = now(), updated_at = now()
           from deliveries d
          where d.scenario_id = $1 and d.kind = 'during_call' and d.state = 'pending'
            and a.blocked_by = d.id",
        scenario_id,
    )
    .execute(&mut *tx)
    .await?;
    Ok(r.rows_affected())
}

/// Parks these deliveries (pending or just failed) of an endpoint that
/// holds its deliveries.
async fn park_these(tx: &mut PgConnection, ids: &[Uuid]) -> Result<(), StoreError> {
    sqlx::query!(
        "update deliveries
            set state = 'pending', parked = true, next_attempt_at = null, updated_at = now()
          where id = any($1) and state in ('pending', 'failed') and lease_token is null
            and blocked_by is null",
        ids,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Makes a recovered (or enabled) endpoint's parked deliveries due, oldest
/// first and `per_second` at most, so a receiver coming back is not flooded;
/// after-call ones whose call's during-call delivery is pending (and not
/// itself held) wait for it again. Returns how many will go.
async fn drain(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    kind: DeliveryKind,
    per_second: u32,
) -> Result<u64, StoreError> {
    let r = sqlx::query!(
        "with p as (
             select id, row_number() over (order by id) - 1 as n
               from deliveries where scenario_id = $1 and kind = $2 and parked
         )
         update deliveries d
            set parked = false, next_attempt_at = now() + make_interval(secs => p.n / $3::float8),
                updated_at = now()
           from p
          where d.id = p.id",
        scenario_id,
        kind as _,
        f64::from(per_second.max(1)),
    )
    .execute(&mut *tx)
    .await?;
    let drained = r.rows_affected();
    // Per-call order again: an after-call delivery goes after its call's
    // during-call delivery, unless that one's endpoint holds it.
    sqlx::query!(
        "update deliveries a
            set blocked_by = p.id, next_attempt_at = null, updated_at = now()
           from deliveries p, endpoints e
          where a.scenario_id = $1 and a.kind = 'after_call' and a.state = 'pending'
            and not a.parked and a.blocked_by is null and a.lease_token is null
            and p.call_id = a.call_id and p.kind = 'during_call' and p.state = 'pending'
            and not p.parked
            and e.scenario_id = p.scenario_id and e.kind = 'during_call'
            and e.state in ('healthy', 'failing')",
        scenario_id,
    )
    .execute(&mut *tx)
    .await?;
    Ok(drained)
}

/// Queues the operator event of a transition (a delivery of its own kind,
/// sent through the same queue and retries as every webhook).
async fn queue_event(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    kind: DeliveryKind,
    t: Transition,
) -> Result<(), StoreError> {
    let Some(e) = endpoint(&mut *tx, scenario_id, kind).await? else {
        return Ok(());
    };
    let payload = event_payload(
        t.event_type(),
        Utc::now(),
        &EventData {
            scenario_id: scenario_id.to_string(),
            scenario_name: &e.scenario_name,
            kind,
            url: e.url.as_deref(),
            state: e.state,
            since: e.since,
            last_error: e.last_error.as_deref(),
            deliveries_waiting: e.deliveries_waiting,
        },
    );
    sqlx::query!(
        "insert into deliveries (id, call_id, scenario_id, kind, payload, next_attempt_at)
         values ($1, null, null, 'operator_event', $2, now())",
        Uuid::now_v7(),
        payload,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// An endpoint as operators see it (the `endpoint_health` view).
#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub scenario_id: Uuid,
    pub scenario_name: String,
    pub kind: DeliveryKind,
    pub url: Option<String>,
    pub state: EndpointState,
    pub since: DateTime<Utc>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub consecutive_failures: i32,
    pub deliveries_waiting: i64,
}

/// One endpoint, as operators see it.
pub async fn endpoint(
    e: impl PgExecutor<'_>,
    scenario_id: Uuid,
    kind: DeliveryKind,
) -> Result<Option<EndpointRow>, StoreError> {
    Ok(select(e, None, Some(&[scenario_id]), Some(kind))
        .await?
        .pop())
}

/// Every endpoint, or those in `state`, worst first (disabled, paused,
/// failing, healthy), longest in their state first.
pub async fn list(
    e: impl PgExecutor<'_>,
    state: Option<EndpointState>,
) -> Result<Vec<EndpointRow>, StoreError> {
    select(e, state, None, None).await
}

/// The endpoints of these scenarios.
pub async fn of_scenarios(
    e: impl PgExecutor<'_>,
    scenario_ids: &[Uuid],
) -> Result<Vec<EndpointRow>, StoreError> {
    select(e, None, Some(scenario_ids), None).await
}

/// The `endpoint_health` rows matching every filter given, worst first.
async fn select(
    e: impl PgExecutor<'_>,
    state: Option<EndpointState>,
    scenario_ids: Option<&[Uuid]>,
    kind: Option<DeliveryKind>,
) -> Result<Vec<EndpointRow>, StoreError> {
    Ok(sqlx::query_as!(
        EndpointRow,
        r#"select scenario_id as "scenario_id!", scenario_name as "scenario_name!",
                  kind as "kind!: DeliveryKind", url, state as "state!: EndpointState",
                  since as "since!", last_success_at, last_error,
                  consecutive_failures as "consecutive_failures!",
                  deliveries_waiting as "deliveries_waiting!"
             from endpoint_health
            where ($1::text is null or state = $1)
              and ($2::uuid[] is null or scenario_id = any($2))
              and ($3::text is null or kind = $3)
            order by case state when 'disabled' then 0 when 'paused' then 1 when 'failing' then 2 else 3 end,
                     since, scenario_id, kind"#,
        state.map(EndpointState::as_str),
        scenario_ids,
        kind.map(DeliveryKind::as_str),
    )
    .fetch_all(e)
    .await?)
}

/// What an operator's pause or enable did.
#[derive(Debug)]
pub struct Switched {
    pub endpoint: EndpointRow,
    pub transition: Option<Transition>,
    /// Deliveries that will now go (enable), or that now wait (pause).
    pub deliveries: u64,
}

/// An operator pauses an endpoint: its deliveries wait, and no probes go
/// until it is enabled.
pub async fn pause(
    pool: &PgPool,
    scenario_id: Uuid,
    kind: DeliveryKind,
    settings: &HealthSettings,
) -> Result<Switched, StoreError> {
    let mut tx = pool.begin().await?;
    let row = lock(&mut tx, scenario_id, kind)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut h = row.health();
    let now = Utc::now();
    let t = h.pause_by_hand(now);
    save(&mut tx, scenario_id, kind, &h).await?;
    if let Some(t) = t {
        settle(&mut tx, scenario_id, kind, &[t], settings).await?;
        crate::queue::notify(&mut *tx).await?;
    }
    let endpoint = endpoint(&mut *tx, scenario_id, kind)
        .await?
        .ok_or(StoreError::NotFound)?;
    tx.commit().await?;
    Ok(Switched {
        deliveries: endpoint.deliveries_waiting as u64,
        endpoint,
        transition: t,
    })
}

/// An operator enables an endpoint (or its URL changed, or a test send to it
/// succeeded): healthy, its waiting deliveries drain.
pub async fn enable(
    pool: &PgPool,
    scenario_id: Uuid,
    kind: DeliveryKind,
    settings: &HealthSettings,
) -> Result<Switched, StoreError> {
    let mut tx = pool.begin().await?;
    let (t, deliveries) = enable_in(&mut tx, scenario_id, kind, settings).await?;
    let endpoint = endpoint(&mut *tx, scenario_id, kind)
        .await?
        .ok_or(StoreError::NotFound)?;
    tx.commit().await?;
    Ok(Switched {
        endpoint,
        transition: t,
        deliveries,
    })
}

/// [`enable`] inside a transaction; returns the transition (none if it was
/// healthy) and how many waiting deliveries will now go.
pub(crate) async fn enable_in(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    kind: DeliveryKind,
    settings: &HealthSettings,
) -> Result<(Option<Transition>, u64), StoreError> {
    let row = lock(tx, scenario_id, kind)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut h = row.health();
    let t = h.enable(Utc::now());
    if t.is_none() {
        return Ok((None, 0));
    }
    save(tx, scenario_id, kind, &h).await?;
    let mut deliveries = 0;
    if let Some(t) = t {
        let (made_due, events) = settle(tx, scenario_id, kind, &[t], settings).await?;
        if made_due + events > 0 {
            crate::queue::notify(&mut *tx).await?;
        }
        deliveries = made_due;
    }
    Ok((t, deliveries))
}

/// Takes the probes that are due: for each paused endpoint whose next probe
/// time has come (one process gets it), its oldest waiting delivery, leased
/// for `lease`. An after-call endpoint's probe is a call whose during-call
/// webhook is final (or whose during-call endpoint is disabled), among its
/// 100 oldest; with none, it skips this round: per-call order holds when
/// both of a scenario's endpoints come back.
pub async fn take_probes(
    pool: &PgPool,
    lease: Duration,
    probe_interval: Duration,
) -> Result<Vec<Claimed>, StoreError> {
    let mut tx = pool.begin().await?;
    let due = sqlx::query!(
        r#"update endpoints
              set next_probe_at = now() + make_interval(secs => $1), updated_at = now()
            where state = 'paused' and next_probe_at <= now()
        returning scenario_id, kind as "kind: DeliveryKind""#,
        probe_interval.as_secs_f64(),
    )
    .fetch_all(&mut *tx)
    .await?;
    let token = Uuid::now_v7();
    let mut probes = Vec::new();
    for e in due {
        let probe = sqlx::query_as!(
            Claimed,
            r#"with pick as (
                   select d.id
                     from (select id, call_id from deliveries
                            where scenario_id = $1 and kind = $2 and parked
                            order by id limit 100) d
                    where $2 <> 'after_call' or not exists (
                            select 1 from deliveries p
                              join endpoints e on e.scenario_id = p.scenario_id and e.kind = 'during_call'
                             where p.call_id = d.call_id and p.kind = 'during_call'
                               and p.state = 'pending' and e.state <> 'disabled')
                    order by d.id
                    limit 1
               ), leased as (
                   update deliveries d
                      set parked = false, lease_token = $3,
                          next_attempt_at = now() + make_interval(secs => $4), updated_at = now()
                     from pick
                    where d.id = pick.id and d.parked
                returning d.id, d.call_id, d.kind, d.payload, d.attempt_count, d.created_at, d.scenario_id
               )
               select c.id as "id!", c.call_id, c.kind as "kind!: DeliveryKind", c.payload as "payload!",
                      c.attempt_count as "attempt_count!", c.created_at as "created_at!",
                      case c.kind when 'during_call' then s.during_call_url else s.after_call_url end as url,
                      s.signing_secret as "signing_secret?: StoredSecret",
                      case when s.previous_secret_expires_at > now() then s.previous_signing_secret end
                        as "previous_signing_secret?: StoredSecret",
                      $3::uuid as "lease_token!", c.scenario_id,
                      'paused'::text as "endpoint_state?: EndpointState", true as "probe!"
                 from leased c
                 join scenarios s on s.id = c.scenario_id"#,
            e.scenario_id,
            e.kind as _,
            token,
            lease.as_secs_f64(),
        )
        .fetch_optional(&mut *tx)
        .await?;
        probes.extend(probe);
    }
    tx.commit().await?;
    Ok(probes)
}

/// How many endpoints are in each state (every state listed, zeros too).
pub async fn count_by_state(
    e: impl PgExecutor<'_>,
) -> Result<Vec<(EndpointState, i64)>, StoreError> {
    let rows = sqlx::query!(
        r#"select state as "state!: EndpointState", count(*) as "n!" from endpoints group by state"#
    )
    .fetch_all(e)
    .await?;
    Ok(EndpointState::ALL
        .iter()
        .map(|s| {
            let n = rows.iter().find(|r| r.state == *s).map_or(0, |r| r.n);
            (*s, n)
        })
        .collect())
}
