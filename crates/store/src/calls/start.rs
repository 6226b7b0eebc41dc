//! Start events: many to a transaction, and the late start that joins a call
//! stored from its end.

use std::collections::{HashMap, HashSet};

use callhook_core::{fingerprint, Call, CancelReason, DeliveryKind, DeliveryState};
use chrono::{SubsecRound as _, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::insert::{insert_calls, insert_delivery, NewCall, NewRow};
use super::row::{lock_call, CallRow};
use super::scenario::{IngestScenario, ScenarioCache};
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
struct Checked {
    index: usize,
    scenario: IngestScenario,
    hash: String,
    /// The event gave its `date` (otherwise the call's time is now).
    date_given: bool,
    /// Nothing covered the number at the call's time.
    unattributed: bool,
    call: Call,
    /// The most its webhooks' bodies may weigh (`CALLHOOK_MAX_PAYLOAD_BYTES`).
    max_payload: usize,
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
    max_payload: usize,
) -> Result<StartBatch, StoreError> {
    let mut tx = pool.begin().await?;
    let mut results: Vec<Option<Result<Ingested, IngestError>>> =
        inputs.iter().map(|_| None).collect();
    let mut work = NewWork::default();

    let mut checked = Vec::with_capacity(inputs.len());
    let mut scenarios = ScenarioCache::default();
    scenarios.load(&mut tx, inputs).await?;
    for (index, input) in inputs.iter().enumerate() {
        match check(&mut tx, &mut scenarios, index, input, max_payload).await {
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
    let endpoint_cap = lease.map_or(0, |l| l.endpoint_cap);
    // What each during-call endpoint may still take in flight.
    let mut room: HashMap<Uuid, i64> = HashMap::new();
    let mut seen = HashSet::new();
    let mut rows = Vec::with_capacity(checked.len());
    let mut inserted = HashMap::new();
    let mut bytes = 0;
    for c in &checked {
        if !seen.insert(c.call.id.as_str()) {
            continue;
        }
        let (payload, cancelled) = match c.scenario.during_call_url {
            Some(_) => {
                let (body, cancelled) =
                    c.scenario
                        .payload(&c.call, DeliveryKind::DuringCall, max_payload);
                (Some(body), cancelled)
            }
            None => (None, None),
        };
        let parked = c.scenario.during_state.holds_deliveries() && cancelled.is_none();
        let room = room.entry(c.scenario.id).or_insert_with(|| {
            i64::from(c.scenario.during_cap.unwrap_or(endpoint_cap)) - c.scenario.during_in_flight
        });
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
                match new.lease_token {
                    Some(token) => work.leased.push(Claimed {
                        id: new.delivery.id,
                        call_id: Some(c.call.id.clone()),
                        kind: DeliveryKind::DuringCall,
                        payload: new.payload,
                        attempt_count: 0,
                        created_at: new.created_at,
                        url: c.scenario.during_call_url.clone(),
                        signing_secret: Some(c.scenario.signing_secret.clone()),
                        previous_signing_secret: c.scenario.previous_signing_secret.clone(),
                        lease_token: token,
                        scenario_id: Some(c.scenario.id),
                        endpoint_state: Some(c.scenario.during_state),
                        probe: false,
                    }),
                    None if new.delivery.cancelled.is_none() => work.queued += 1,
                    None => {}
                }
                Ok(Ingested::Created(vec![new.delivery]))
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
    max_payload: usize,
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
        max_payload,
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
        Some(h) if *h == c.hash => Ok(Ingested::Repeated(
            deliveries_of(&mut *tx, id, DeliveryKind::DuringCall).await?,
        )),
        Some(_) => Err(IngestError::Conflict(format!(
            "call {id} was already reported with other data; a call id must be unique"
        ))),
        None => join_start(tx, c, row, work).await,
    }
}

/// A start arriving after its call was stored from the end event: its fields
/// join the row, and its during-call delivery goes first if the after-call
/// one has not gone out yet, or is stored `cancelled` if it has. An
/// after-call delivery not gone out yet is rebuilt with the start's fields,
/// whether or not the scenario has a during-call webhook.
async fn join_start(
    tx: &mut PgConnection,
    c: &Checked,
    row: CallRow,
    work: &mut NewWork,
) -> Result<Ingested, IngestError> {
    let id = &c.call.id;
    if row.caller != c.call.caller.as_str() || row.callee != c.call.callee.as_str() {
        return Err(IngestError::Conflict(format!(
            "call {id} was ended as a call from {} to {}; this start names another caller or callee",
            row.caller, row.callee
        )));
    }
    if row.scenario_id != Some(c.scenario.id) {
        return Err(IngestError::Conflict(format!(
            "call {id} was ended under another scenario (or one since deleted)"
        )));
    }
    if c.date_given && !row.started_at_estimated && row.started_at != c.call.date {
        return Err(IngestError::Conflict(format!(
            "call {id} was ended with start date {}; this start gives another",
            row.started_at.to_rfc3339()
        )));
    }
    // The start's own date wins over an estimate; without one, the call's
    // time is what the end said.
    let (started_at, estimated) = if c.date_given {
        (c.call.date, false)
    } else {
        (row.started_at, row.started_at_estimated)
    };
    let visit = serde_json::to_value(&c.call.visit).expect("a visit serialises");
    sqlx::query!(
        "update calls c
            set (visit_id, marker, order_id, google_client_id, landing_page, domain, city, country,
                 ip, first_visit, referrer, utm_source, utm_medium, utm_campaign, utm_term,
                 utm_content, roistat_param_1, roistat_param_2, roistat_param_3, roistat_param_4,
                 roistat_param_5, metrika_client_id, source_level_1, source_level_2) =
                (select v.visit_id, v.marker, v.order_id, v.google_client_id, v.landing_page,
                        v.domain, v.city, v.country, v.ip, v.first_visit, v.referrer, v.utm_source,
                        v.utm_medium, v.utm_campaign, v.utm_term, v.utm_content, v.roistat_param_1,
                        v.roistat_param_2, v.roistat_param_3, v.roistat_param_4, v.roistat_param_5,
                        v.metrika_client_id, v.source_level_1, v.source_level_2
                   from jsonb_populate_record(null::calls, $2) v),
                started_at = $3, started_at_estimated = $4, start_hash = $5, updated_at = now()
          where id = $1",
        id,
        visit,
        started_at,
        estimated,
        c.hash,
    )
    .execute(&mut *tx)
    .await?;
    if c.unattributed {
        work.unattributed.push(c.scenario.id);
    }

    // The after-call delivery, locked: a claim holding it has it in flight.
    let after = sqlx::query!(
        r#"select id, state as "state: DeliveryState", lease_token, attempt_count
             from deliveries where call_id = $1 and kind = 'after_call'
              for update"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    // Not attempted, not being attempted: it may still wait for this start.
    let held = after.as_ref().filter(|a| {
        a.state == DeliveryState::Pending && a.lease_token.is_none() && a.attempt_count == 0
    });
    let gone_out = after
        .as_ref()
        .is_some_and(|a| held.is_none() && (a.attempt_count > 0 || a.lease_token.is_some()));
    if c.scenario.during_call_url.is_none() && held.is_none() {
        return Ok(Ingested::Created(Vec::new()));
    }
    let joined = lock_call(tx, id).await?.ok_or(StoreError::NotFound)?;
    let mut call = joined.call();
    let end = call.end.take();

    let delivery = match c.scenario.during_call_url {
        Some(_) => {
            let (payload, too_large) =
                c.scenario
                    .payload(&call, DeliveryKind::DuringCall, c.max_payload);
            let row = NewRow {
                call_id: id,
                scenario_id: c.scenario.id,
                kind: DeliveryKind::DuringCall,
                payload,
                due_in: std::time::Duration::ZERO,
                blocked_by: None,
                cancelled: too_large.or(gone_out.then_some(CancelReason::CallAlreadyEnded)),
                parked: c.scenario.during_state.holds_deliveries(),
            };
            Some(insert_delivery(tx, row).await?)
        }
        None => None,
    };
    if let Some(after) = held {
        // Sent with this start's fields, and after its webhook; with none to
        // wait for (no during-call URL, or its endpoint holds its
        // deliveries), due now unless its own endpoint holds it (parked).
        // Blocked, it is not parked (see the module docs): the during-call
        // delivery's end makes it due, and the claim parks it then if its
        // endpoint holds its deliveries.
        call.end = end;
        // A during-call delivery stored cancelled (too large) is final:
        // nothing waits for it.
        let blocked_by = delivery
            .as_ref()
            .filter(|d| d.cancelled.is_none() && !c.scenario.during_state.holds_deliveries())
            .map(|d| d.id);
        let (payload, too_large) =
            c.scenario
                .payload(&call, DeliveryKind::AfterCall, c.max_payload);
        let due = sqlx::query_scalar!(
            r#"update deliveries
                  set blocked_by = case when $4::text is null then $2::uuid end,
                      parked = parked and $2::uuid is null and $4::text is null,
                      next_attempt_at = case when $2::uuid is null and not parked and $4::text is null
                                             then now() end,
                      state = case when $4::text is null then state else 'cancelled' end,
                      last_error = coalesce($4, last_error),
                      payload = $3, updated_at = now()
                where id = $1
            returning next_attempt_at is not null as "due!""#,
            after.id,
            blocked_by,
            payload,
            too_large.map(CancelReason::as_str),
        )
        .fetch_one(&mut *tx)
        .await?;
        if due {
            work.queued += 1;
        }
    }
    let Some(delivery) = delivery else {
        return Ok(Ingested::Created(Vec::new()));
    };
    if delivery.state == DeliveryState::Pending && !c.scenario.during_state.holds_deliveries() {
        work.queued += 1;
    }
    Ok(Ingested::Created(vec![delivery]))
}
