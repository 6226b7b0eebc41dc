//! Recordings reported on their own (`POST /api/v1/calls/{id}/recording`):
//! a PBX often has the file only after it has reported the end.
//!
//! The rules, in one place:
//! - A recording is the call's `link` and `file_id`, wherever they came from
//!   (the end, or a report of their own, `recording_at`).
//! - **Before the end**: it is stored on the call, and the end uses it when it
//!   carries none itself.
//! - **After the end, the after-call webhook not sent yet** (held for it by the
//!   scenario's `recording_wait`, or waiting for its during-call webhook, or
//!   for its endpoint): its body is built again with the recording and, if
//!   nothing else holds it, it is due now.
//! - **After the webhook went** (or while it is being sent): stored and shown
//!   on the call; nothing is sent until an operator sends the webhook again
//!   with it (`rebuild`).
//! - The same recording again changes nothing; a different one for a call
//!   that has one is a conflict.

use callhook_core::{CancelReason, DeliveryKind, DeliveryState};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::row::{lock_call, CallRow};
use super::scenario::{first_call, resolve_scenario, IngestScenario};
use super::{IngestError, NewWork};
use crate::StoreError;

/// A recording as reported: its address and/or the PBX's file id.
#[derive(Debug, Clone, Serialize)]
pub struct Recording {
    pub link: Option<String>,
    pub file_id: Option<String>,
}

/// What became of a recording for the call's after-call webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingOutcome {
    /// The call has not ended: its end will carry it.
    KeptForEnd,
    /// Put into the after-call webhook, which had not gone yet.
    SentWithIt,
    /// The after-call webhook had gone (or was going) without it: it is
    /// stored and shown; an operator may send the webhook again with it.
    SentWithoutIt,
    /// The call has no after-call webhook to carry it (none configured, or
    /// not sent: filtered, too large, cancelled).
    NoWebhook,
}

/// What a recording report did.
#[derive(Debug)]
pub enum RecordingStored {
    /// Stored now.
    Created(RecordingOutcome),
    /// The call had this recording already: nothing new.
    Repeated,
}

/// Stores a recording reported apart from the end, and puts it into the
/// after-call webhook if that has not gone yet (see the module docs).
pub async fn recording(
    pool: &PgPool,
    call_id: &str,
    given: &Recording,
    max_payload: usize,
) -> Result<(RecordingStored, NewWork), IngestError> {
    let mut tx = pool.begin().await?;
    let mut work = NewWork::default();
    let Some(row) = lock_call(&mut tx, call_id).await? else {
        return Err(IngestError::CallNotFound(format!(
            "call {call_id} has neither started nor ended: send its recording again once its \
             start or end is in"
        )));
    };
    match compare(&row, given) {
        Compared::Conflict => {
            return Err(IngestError::Conflict(format!(
                "call {call_id} already has another recording"
            )))
        }
        Compared::Same => return Ok((RecordingStored::Repeated, work)),
        Compared::New => {}
    }
    sqlx::query!(
        "update calls
            set link = coalesce(nullif($2, ''), link), file_id = coalesce(nullif($3, ''), file_id),
                recording_at = now(), updated_at = now()
          where id = $1",
        call_id,
        given.link,
        given.file_id,
    )
    .execute(&mut *tx)
    .await?;
    let outcome = if row.end_hash.is_none() {
        RecordingOutcome::KeptForEnd
    } else {
        join_after_call(&mut tx, call_id, row.scenario_id, max_payload, &mut work).await?
    };
    tx.commit().await?;
    Ok((RecordingStored::Created(outcome), work))
}

enum Compared {
    /// Nothing the call does not have already.
    Same,
    /// A value the call has, and this one differs.
    Conflict,
    /// It fills what the call lacks.
    New,
}

fn compare(row: &CallRow, given: &Recording) -> Compared {
    let fields = [
        (given.link.as_deref(), row.link.as_deref()),
        (given.file_id.as_deref(), row.file_id.as_deref()),
    ];
    let mut new = false;
    for (given, stored) in fields {
        let given = given.unwrap_or_default();
        let stored = stored.unwrap_or_default();
        match (given.is_empty(), stored.is_empty()) {
            (true, _) => {}
            (false, true) => new = true,
            (false, false) if given != stored => return Compared::Conflict,
            (false, false) => {}
        }
    }
    if new {
        Compared::New
    } else {
        Compared::Same
    }
}

/// Puts the call's recording (just stored) into its after-call webhook when
/// that has not gone out yet: its body built again, and due now unless its
/// during-call webhook, its endpoint or its start still holds it.
async fn join_after_call(
    tx: &mut PgConnection,
    call_id: &str,
    scenario_id: Option<Uuid>,
    max_payload: usize,
    work: &mut NewWork,
) -> Result<RecordingOutcome, IngestError> {
    let Some(scenario_id) = scenario_id else {
        return Ok(RecordingOutcome::NoWebhook);
    };
    // The after-call delivery, locked: a claim holding it has it in flight.
    let after = sqlx::query!(
        r#"select id, state as "state: DeliveryState", lease_token, attempt_count
             from deliveries where call_id = $1 and kind = 'after_call'
              for update"#,
        call_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(after) = after else {
        return Ok(RecordingOutcome::NoWebhook);
    };
    if after.attempt_count > 0 || after.lease_token.is_some() {
        return Ok(RecordingOutcome::SentWithoutIt);
    }
    if after.state != DeliveryState::Pending {
        return Ok(RecordingOutcome::NoWebhook);
    }
    let scenario = resolve_scenario(tx, Some(scenario_id), None).await?;
    let (payload, cancelled, filtered_by) = rebuild(tx, &scenario, call_id, max_payload).await?;
    // Its conditions are evaluated again, on the call as it now is.
    let due = sqlx::query_scalar!(
        r#"update deliveries d
              set payload = $2, recording_due_at = null,
                  next_attempt_at = case
                      when $3::text is not null then null
                      when d.blocked_by is not null or d.parked then d.next_attempt_at
                      -- An end that came before its start: the start's grace still holds it.
                      when (select c.start_hash is null from calls c where c.id = d.call_id)
                          then d.next_attempt_at
                      else now() end,
                  state = case when $3::text is null then state else 'cancelled' end,
                  blocked_by = case when $3::text is null then blocked_by end,
                  last_error = coalesce($3, last_error),
                  filtered_by = $4, updated_at = now()
            where id = $1
        returning coalesce(next_attempt_at <= now(), false) as "due!""#,
        after.id,
        payload,
        cancelled.map(CancelReason::as_str),
        filtered_by.map(Json) as _,
    )
    .fetch_one(&mut *tx)
    .await?;
    if due {
        work.queued += 1;
    }
    Ok(match cancelled {
        Some(_) => RecordingOutcome::NoWebhook,
        None => RecordingOutcome::SentWithIt,
    })
}

/// The call's after-call webhook built again from the call as it is now
/// (its recording included) and `scenario`'s settings: the body, and why it
/// would be cancelled (its conditions, its size).
async fn rebuild(
    tx: &mut PgConnection,
    scenario: &IngestScenario,
    call_id: &str,
    max_payload: usize,
) -> Result<
    (
        String,
        Option<CancelReason>,
        Option<callhook_core::Condition>,
    ),
    IngestError,
> {
    let row = lock_call(tx, call_id).await?.ok_or(StoreError::NotFound)?;
    let call = row.call();
    let first = if scenario.needs_first_call(DeliveryKind::AfterCall) {
        first_call(tx, scenario.id, call.caller.as_str(), call_id, call.date).await?
    } else {
        false
    };
    Ok(scenario.delivery(&call, DeliveryKind::AfterCall, max_payload, first))
}

/// Builds a final after-call delivery's body again from its call as it is
/// now (a recording that came after it went, most often), before an
/// operator sends it again. Its conditions are not asked again: the
/// operator asked for it. Fails with `payload_too_large` when the body
/// would now pass `max_payload`.
pub async fn rebuild_for_resend(
    pool: &PgPool,
    delivery_id: Uuid,
    max_payload: usize,
) -> Result<(), IngestError> {
    let mut tx = pool.begin().await?;
    let d = sqlx::query!(
        r#"select call_id, scenario_id, kind as "kind: DeliveryKind",
                  state as "state: DeliveryState"
             from deliveries where id = $1
              for update"#,
        delivery_id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    if d.state == DeliveryState::Pending {
        return Err(IngestError::Conflict(format!(
            "delivery {delivery_id} is pending: a recording reported now joins it by itself; \
             rebuild is for a delivery that has gone"
        )));
    }
    let (Some(call_id), Some(scenario_id), DeliveryKind::AfterCall) =
        (d.call_id, d.scenario_id, d.kind)
    else {
        return Err(IngestError::Field(callhook_core::FieldError::new(
            "rebuild",
            "not_after_call",
            "only a call's after-call webhook is built again with its recording",
        )));
    };
    let scenario = resolve_scenario(&mut tx, Some(scenario_id), None).await?;
    let (payload, cancelled, _) = rebuild(&mut tx, &scenario, &call_id, max_payload).await?;
    if cancelled == Some(CancelReason::PayloadTooLarge) {
        return Err(IngestError::Field(callhook_core::FieldError::new(
            "rebuild",
            "rebuilt_too_large",
            "the webhook built again would pass CALLHOOK_MAX_PAYLOAD_BYTES; send it again as it was",
        )));
    }
    sqlx::query!(
        "update deliveries set payload = $2, updated_at = now() where id = $1",
        delivery_id,
        payload
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
