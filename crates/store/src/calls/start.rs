//! Start events: many to a transaction, and the late start that joins a call
//! stored from its end.

use std::collections::{HashMap, HashSet};

use callhook_core::{fingerprint, same_fingerprint, Call, DeliveryKind};
use chrono::{SubsecRound as _, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::insert::{insert_calls, NewCall};
use super::row::lock_call;
use super::scenario::{first_call, IngestScenario, ScenarioCache};
use super::{deliveries_of, IngestError, Ingested, LeasePlan, NewWork, StartCall};
use crate::queue::Claimed;
use crate::StoreError;

/// What [`start_batch`] did: a result per start, in order, and the work it
/// left for the dispatchers.
#[derive(Debug)]
pub struct StartBatch {
    pub results: Vec<Result<Ingested, IngestError>>,
    pub work: NewWork,
}

/// A start that passed every check, on its way into the bulk insert.
pub(super) struct Checked {
    pub(super) index: usize,
    pub(super) scenario: IngestScenario,
    pub(super) hash: String,
    /// The event gave its `date` (otherwise the call's time is now).
    pub(super) date_given: bool,
    /// Nothing covered the number at the call's time.
    pub(super) unattributed: bool,
    pub(super) call: Call,
    /// What the configuration says of its webhooks.
    pub(super) rules: StartRules,
}

/// What the configuration says of a start's webhooks.
#[derive(Debug, Clone, Copy)]
pub struct StartRules {
    /// The most a body may weigh (`CALLHOOK_MAX_PAYLOAD_BYTES`).
    pub max_payload: usize,
    /// A during-call webhook of a call that has ended already (a late
    /// start) expires this long after it is stored, unless its scenario
    /// says otherwise (`CALLHOOK_DURING_CALL_GRACE`).
    pub during_call_grace: std::time::Duration,
}

/// Bodies per insert statement at most (about: the one that passes it
/// goes in too).
const INSERT_BYTES: usize = 4 << 20;

/// Stores many starts in one transaction (one commit) and a handful of
/// statements, whatever their number: the scenarios (one query), the
/// attribution of every call (one query), then every new call and its
/// during-call delivery (one insert, or one per 4 MiB of bodies). A start
/// whose call is stored already is a repeat, a conflict, or a late start
/// joining a call stored from its end (see the module docs). Each item has its own result: one that is
/// refused (a bad field, a conflicting repeat) writes nothing and leaves the
/// others be. A database error fails the whole batch.
///
/// With a `lease` plan, up to its budget of the new deliveries are inserted
/// leased, to be handed to this process's dispatcher (`work.leased`). A
/// webhook whose body would pass `max_payload` bytes is stored cancelled
/// (`payload_too_large`), its call stored all the same.
pub async fn start_batch(
    pool: &PgPool,
    inputs: &[StartCall],
    lease: Option<LeasePlan>,
    rules: StartRules,
) -> Result<StartBatch, StoreError> {
    start_batch_then(pool, inputs, lease, rules, &|| {}).await
}

/// [`start_batch`], calling `committing` once its statements are done, just
/// before it commits (and waits for the WAL flush): a group commit cuts its
/// next group then (`ingest::group_commit`).
pub async fn start_batch_then(
    pool: &PgPool,
    inputs: &[StartCall],
    lease: Option<LeasePlan>,
    rules: StartRules,
    committing: &(dyn Fn() + Sync),
) -> Result<StartBatch, StoreError> {
    let max_payload = rules.max_payload;
    let mut tx = pool.begin().await?;
    let mut results: Vec<Option<Result<Ingested, IngestError>>> =
        inputs.iter().map(|_| None).collect();
    let mut work = NewWork::default();

    let mut checked = Vec::with_capacity(inputs.len());
    let mut scenarios = ScenarioCache::default();
    scenarios.load(&mut tx, inputs).await?;
    for (index, input) in inputs.iter().enumerate() {
        match check(&mut tx, &mut scenarios, index, input, rules).await {
            Ok(c) => checked.push(c),
            Err(IngestError::Store(e)) => return Err(e),
            Err(refused) => results[index] = Some(Err(refused)),
        }
    }
    let mut visits: Vec<_> = checked
        .iter_mut()
        .map(|c| {
            (
                c.scenario.id,
                &c.call.callee,
                c.call.date,
                &mut c.call.visit,
            )
        })
        .collect();
    let unattributed = crate::pool::attribute_visits(&mut tx, &mut visits).await?;
    drop(visits);
    for (c, unattributed) in checked.iter_mut().zip(unattributed) {
        c.unattributed = unattributed;
    }
    // Every transaction writes and locks calls in id order, so two that
    // share ids wait for each other instead of deadlocking.
    checked.sort_by(|a, b| a.call.id.cmp(&b.call.id));

    // One row per call id: a repeat within the batch is answered below as a
    // repeat of the first.
    let token = Uuid::now_v7();
    let mut leases_left = lease.map_or(0, |l| l.budget);
    let lease_secs = lease.map_or(0.0, |l| l.lease.as_secs_f64());
    // What each during-call endpoint may still take in flight.
    let mut room = match lease {
        Some(plan) if plan.budget > 0 => handoff_room(&mut tx, &checked, plan.endpoint_cap).await?,
        _ => HashMap::new(),
    };
    let mut seen = HashSet::new();
    let mut rows = Vec::with_capacity(checked.len());
    let mut inserted = HashMap::new();
    let mut bytes = 0;
    for c in &checked {
        if !seen.insert(c.call.id.as_str()) {
            continue;
        }
        let (payload, cancelled, filtered_by) = match c.scenario.during_call_url {
            Some(_) => {
                let first = if c.scenario.needs_first_call(DeliveryKind::DuringCall) {
                    let call = &c.call;
                    first_call(
                        &mut tx,
                        c.scenario.id,
                        call.caller.as_str(),
                        &call.id,
                        call.date,
                    )
                    .await?
                } else {
                    false
                };
                let (body, cancelled, filtered_by) =
                    c.scenario
                        .delivery(&c.call, DeliveryKind::DuringCall, max_payload, first);
                (Some(body), cancelled, filtered_by)
            }
            None => (None, None, None),
        };
        let parked = c.scenario.during_state.holds_deliveries() && cancelled.is_none();
        let room = room.entry(c.scenario.id).or_default();
        let sendable = payload.is_some() && cancelled.is_none() && !parked;
        let lease = (sendable && leases_left > 0 && *room > 0).then(|| {
            leases_left -= 1;
            *room -= 1;
            (token, lease_secs)
        });
        bytes += payload.as_ref().map_or(0, String::len);
        rows.push(NewCall {
            call: &c.call,
            scenario_id: c.scenario.id,
            start_hash: Some(&c.hash),
            started_at_estimated: false,
            payload,
            cancelled,
            filtered_by,
            lease,
            parked,
        });
        // The bodies go in statements of a few MiB: a batch of the largest
        // webhooks never holds all of its bodies (and their encoding) at once.
        if bytes >= INSERT_BYTES {
            inserted.extend(insert_calls(&mut tx, std::mem::take(&mut rows)).await?);
            bytes = 0;
        }
    }
    inserted.extend(insert_calls(&mut tx, rows).await?);

    for c in checked {
        let result = match inserted.remove(&c.call.id) {
            Some(delivery) => {
                if c.unattributed {
                    work.unattributed.push(c.scenario.id);
                }
                let Some(new) = delivery else {
                    results[c.index] = Some(Ok(Ingested::Created(Vec::new())));
                    continue;
                };
                let delivery = new.delivery.clone();
                match new.lease_token {
                    Some(token) => {
                        work.leased
                            .push(Claimed::handed_off(&c.scenario, &c.call.id, new, token))
                    }
                    None if delivery.cancelled.is_none() => work.queued += 1,
                    None => {}
                }
                Ok(Ingested::Created(vec![delivery]))
            }
            // Stored before: by an earlier event (perhaps a moment ago by a
            // concurrent request), or earlier in this batch.
            None => match stored_before(&mut tx, &c, &mut work).await {
                Err(IngestError::Store(e)) => return Err(e),
                other => other,
            },
        };
        results[c.index] = Some(result);
    }
    committing();
    tx.commit().await?;
    Ok(StartBatch {
        results: results
            .into_iter()
            .map(|r| r.expect("every start answered"))
            .collect(),
        work,
    })
}

/// The checks of one start that need the database (its scenario, its date
/// in the scenario's zone), before anything is written.
async fn check(
    tx: &mut PgConnection,
    scenarios: &mut ScenarioCache,
    index: usize,
    input: &StartCall,
    rules: StartRules,
) -> Result<Checked, IngestError> {
    let scenario = scenarios.resolve(tx, input).await?;
    let date = match &input.date {
        Some(d) => scenario.tz().parse_date(d, "date")?,
        None => Utc::now(),
    };
    Ok(Checked {
        index,
        hash: fingerprint(input),
        date_given: input.date.is_some(),
        unattributed: false,
        call: Call {
            id: input.id.clone(),
            caller: input.caller.clone(),
            callee: input.callee.clone(),
            // Postgres keeps microseconds: the payload and the row agree.
            date: date.trunc_subsecs(6),
            visit: input.visit.clone(),
            end: None,
        },
        scenario,
        rules,
    })
}

/// The answer to a start whose call id is stored already: the same start
/// again, a conflict, or a late start joining a call stored from its end.
async fn stored_before(
    tx: &mut PgConnection,
    c: &Checked,
    work: &mut NewWork,
) -> Result<Ingested, IngestError> {
    let id = &c.call.id;
    // It exists: our insert conflicted with it (after waiting for its
    // transaction, had it been in flight).
    let row = lock_call(tx, id).await?.ok_or(StoreError::NotFound)?;
    match &row.start_hash {
        Some(h) if same_fingerprint(h, &c.hash) => Ok(Ingested::Repeated(
            deliveries_of(&mut *tx, id, DeliveryKind::DuringCall).await?,
        )),
        Some(_) => Err(IngestError::Conflict(format!(
            "call {id} was already reported with other data; a call id must be unique"
        ))),
        None => super::late_start::join_start(tx, c, row, work).await,
    }
}

/// What each during-call endpoint of the group may still take in flight
/// (its cap, the scenario's or `endpoint_cap`, less what is leased and not
/// yet recorded), counted under a lock held to the commit, so groups that
/// lease at once (two committers, two processes) take turns and never pass
/// the cap together (`lock_during_call_room`). An endpoint at its cap
/// already is not locked: the group leases nothing for it.
async fn handoff_room(
    tx: &mut PgConnection,
    checked: &[Checked],
    endpoint_cap: i32,
) -> Result<HashMap<Uuid, i64>, StoreError> {
    let mut caps: HashMap<Uuid, i32> = HashMap::new();
    for c in checked
        .iter()
        .filter(|c| c.scenario.during_call_url.is_some())
    {
        caps.insert(c.scenario.id, c.scenario.during_cap.unwrap_or(endpoint_cap));
    }
    if caps.is_empty() {
        return Ok(HashMap::new());
    }
    let (ids, limits): (Vec<Uuid>, Vec<i32>) = caps.iter().map(|(id, cap)| (*id, *cap)).unzip();
    let counted = sqlx::query!(
        r#"select scenario_id as "scenario_id!", in_flight as "in_flight!"
             from lock_during_call_room($1::uuid[], $2::int4[])"#,
        &ids,
        &limits
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(counted
        .into_iter()
        .map(|r| (r.scenario_id, i64::from(caps[&r.scenario_id]) - r.in_flight))
        .collect())
}
