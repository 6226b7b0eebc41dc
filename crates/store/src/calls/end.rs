//! End events: the call's status, duration and recording, and its after-call
//! delivery, ordered after the during-call one.

use std::time::Duration;

use callhook_core::{fingerprint, same_fingerprint, Call, DeliveryKind, DeliveryState, Visit};
use chrono::Utc;
use sqlx::{PgConnection, PgPool};

use super::insert::{insert_calls, insert_delivery, NewCall, NewRow};
use super::row::{lock_call, CallRow};
use super::scenario::{first_call, resolve_scenario};
use super::{deliveries_of, EndCall, IngestError, Ingested, NewWork};
use crate::StoreError;

/// How long an end waits for what may still come.
#[derive(Debug, Clone, Copy)]
pub struct Graces {
    /// An end that arrives before its start holds its after-call webhook
    /// this long for the start (`CALLHOOK_START_GRACE`).
    pub start: Duration,
    /// A during-call webhook not delivered when its call ends is cancelled
    /// (`call_ended`) this long after (`CALLHOOK_DURING_CALL_GRACE`), unless
    /// its scenario says otherwise.
    pub during_call: Duration,
}

/// Records a call's end and queues its after-call webhook, if the scenario
/// has one. A call not started yet is stored from the end when it names its
/// `caller` and `callee`; its after-call webhook is then held for
/// `graces.start`, so a start crossing the end on the wire still goes first.
/// A during-call delivery still pending expires `graces.during_call` later.
///
/// Stays whole: one transaction, its statements in the order the module docs
/// give.
pub async fn end(
    pool: &PgPool,
    call_id: &str,
    input: &EndCall,
    graces: Graces,
    max_payload: usize,
) -> Result<(Ingested, NewWork), IngestError> {
    let start_grace = graces.start;
    let mut tx = pool.begin().await?;
    let mut work = NewWork::default();
    let hash = fingerprint(input);
    let mut row = match lock_call(&mut tx, call_id).await? {
        Some(row) => row,
        None => store_from_end(&mut tx, call_id, input, &mut work).await?,
    };

    if let Some(h) = &row.end_hash {
        return if same_fingerprint(h, &hash) {
            let deliveries = deliveries_of(&mut *tx, call_id, DeliveryKind::AfterCall).await?;
            Ok((Ingested::Repeated(deliveries), NewWork::default()))
        } else {
            Err(IngestError::Conflict(format!(
                "call {call_id} was already ended with other data"
            )))
        };
    }

    // A deleted scenario (null id) sends nothing.
    let scenario = match row.scenario_id {
        Some(id) => Some(resolve_scenario(&mut tx, Some(id), None).await?),
        None => None,
    };
    let tz = scenario.as_ref().map(|s| s.tz()).unwrap_or_default();
    let ended_at = match &input.ended_at {
        Some(d) => tz.parse_date(d, "ended_at")?,
        None => Utc::now(),
    };
    // A recording reported before the end (`recording_at`) stays when the
    // end carries none; otherwise the end's values are stored as given.
    let recording = sqlx::query!(
        "update calls
            set status = $2, duration = $3, ended_at = $6, end_hash = $7, updated_at = now(),
                file_id = case when recording_at is not null and coalesce($4, '') = ''
                               then file_id else $4 end,
                link = case when recording_at is not null and coalesce($5, '') = ''
                            then link else $5 end
          where id = $1
      returning file_id, link",
        call_id,
        input.status.as_str(),
        i32::try_from(input.duration).unwrap_or(i32::MAX),
        input.file_id,
        input.link,
        ended_at,
        hash
    )
    .fetch_one(&mut *tx)
    .await?;

    // The during-call webhook's moment passes with the call: a pending one
    // gets its grace, and is due by its end at the latest.
    let during_grace = scenario.as_ref().map_or(graces.during_call, |s| {
        s.during_call_grace(graces.during_call)
    });
    expire_during_call(&mut tx, call_id, during_grace).await?;

    let mut created = Vec::new();
    if let Some(scenario) = scenario.filter(|s| s.after_call_url.is_some()) {
        row.status = Some(input.status.as_str().to_owned());
        row.duration = Some(i32::try_from(input.duration).unwrap_or(i32::MAX));
        row.file_id = recording.file_id;
        row.link = recording.link;
        row.ended_at = Some(ended_at);
        // Without a recording, the webhook may wait for one.
        let recording_wait = scenario
            .recording_wait()
            .filter(|_| !has_recording(row.file_id.as_deref(), row.link.as_deref()));
        let call = row.call();
        // An after-call webhook does not wait for a during-call endpoint
        // that its health holds (paused by failures, or disabled): it may
        // be days. It does wait through an operator's pause.
        let (blocked_by, due_in) = if row.start_hash.is_none() {
            (None, start_grace)
        } else if scenario.during_releases_after_call {
            (None, Duration::ZERO)
        } else {
            (pending_during_call(&mut tx, call_id).await?, Duration::ZERO)
        };
        let parked = scenario.after_state.holds_deliveries();
        let first = if scenario.needs_first_call(DeliveryKind::AfterCall) {
            first_call(
                &mut tx,
                scenario.id,
                call.caller.as_str(),
                call_id,
                call.date,
            )
            .await?
        } else {
            false
        };
        let (payload, cancelled, filtered_by) =
            scenario.delivery(&call, DeliveryKind::AfterCall, max_payload, first);
        let delivery = insert_delivery(
            &mut tx,
            NewRow {
                call_id,
                scenario_id: scenario.id,
                kind: DeliveryKind::AfterCall,
                payload,
                due_in,
                blocked_by,
                cancelled,
                filtered_by,
                parked: parked && blocked_by.is_none(),
                recording_wait,
            },
        )
        .await?;
        if cancelled.is_none()
            && blocked_by.is_none()
            && due_in.is_zero()
            && recording_wait.is_none()
            && !parked
        {
            work.queued += 1;
        }
        created.push(delivery);
    }
    tx.commit().await?;
    Ok((Ingested::Created(created), work))
}

/// Whether a call has a recording: a `link` or a `file_id` that is not empty.
pub(super) fn has_recording(file_id: Option<&str>, link: Option<&str>) -> bool {
    file_id.is_some_and(|f| !f.is_empty()) || link.is_some_and(|l| !l.is_empty())
}

/// Stores a call from its end event alone (no start has come), and locks it.
async fn store_from_end(
    tx: &mut PgConnection,
    call_id: &str,
    input: &EndCall,
    work: &mut NewWork,
) -> Result<CallRow, IngestError> {
    let (Some(caller), Some(callee)) = (&input.caller, &input.callee) else {
        return Err(IngestError::CallNotFound(format!(
            "call {call_id} has not been started: send this end again once its start is in, \
             or send it with caller and callee to record the call from its end"
        )));
    };
    let scenario = resolve_scenario(tx, input.scenario_id, Some(callee)).await?;
    let tz = scenario.tz();
    let ended_at = match &input.ended_at {
        Some(d) => tz.parse_date(d, "ended_at")?,
        None => Utc::now(),
    };
    let started_at = match &input.date {
        Some(d) => tz.parse_date(d, "date")?,
        None => ended_at - chrono::Duration::seconds(input.duration),
    };
    let mut visit = Visit::default();
    let unattributed =
        crate::pool::attribute_visits(tx, &mut [(scenario.id, callee, started_at, &mut visit)])
            .await?;
    let call = Call {
        id: call_id.to_owned(),
        caller: caller.clone(),
        callee: callee.clone(),
        date: started_at,
        visit,
        end: None,
    };
    // A start inserting the same call concurrently makes this insert wait
    // for its commit and then do nothing: the end joins the started call.
    let inserted = insert_calls(
        tx,
        vec![NewCall {
            call: &call,
            scenario_id: scenario.id,
            start_hash: None,
            started_at_estimated: input.date.is_none(),
            payload: None,
            cancelled: None,
            filtered_by: None,
            lease: None,
            parked: false,
        }],
    )
    .await?;
    if !inserted.is_empty() && unattributed[0] {
        work.unattributed.push(scenario.id);
    }
    Ok(lock_call(tx, call_id).await?.ok_or(StoreError::NotFound)?)
}

/// The call's during-call delivery while it is pending (locked, so its
/// completion waits for this transaction and then sees the after-call
/// delivery that waits for it), or `None` when it is final or absent.
async fn pending_during_call(
    tx: &mut PgConnection,
    call_id: &str,
) -> Result<Option<uuid::Uuid>, StoreError> {
    let during = sqlx::query!(
        r#"select id, state as "state: DeliveryState"
             from deliveries where call_id = $1 and kind = 'during_call'
              for update"#,
        call_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    Ok(during
        .filter(|d| d.state == DeliveryState::Pending)
        .map(|d| d.id))
}

/// Gives the call's pending during-call delivery its grace: `expires_at`,
/// and due by then at the latest; one in flight keeps its lease, and a
/// parked one (its endpoint held) stays parked, for the dispatchers' look
/// at expired held ones (`queue::expire_held`) or its endpoint's drain.
pub(super) async fn expire_during_call(
    tx: &mut PgConnection,
    call_id: &str,
    grace: Duration,
) -> Result<(), StoreError> {
    sqlx::query!(
        "update deliveries
            set expires_at = now() + make_interval(secs => $2),
                next_attempt_at = case
                    when parked or blocked_by is not null then next_attempt_at
                    when lease_token is not null and next_attempt_at > now() then next_attempt_at
                    else least(next_attempt_at, now() + make_interval(secs => $2))
                end,
                updated_at = now()
          where call_id = $1 and kind = 'during_call' and state = 'pending' and expires_at is null",
        call_id,
        grace.as_secs_f64(),
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
