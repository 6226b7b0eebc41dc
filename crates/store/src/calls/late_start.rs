//! A start arriving after its call was stored from its end event (see the
//! module docs): it joins the call's row, and its webhooks are ordered
//! behind one another again.

use callhook_core::{CancelReason, DeliveryKind, DeliveryState};

use super::end::expire_during_call;
use super::insert::{insert_delivery, NewRow};
use super::row::{lock_call, CallRow};
use super::scenario::first_call;
use super::start::Checked;
use super::{IngestError, Ingested, NewWork};
use crate::StoreError;
use sqlx::PgConnection;

/// A start arriving after its call was stored from the end event: its fields
/// join the row, and its during-call delivery goes first if the after-call
/// one has not gone out yet, or is stored `cancelled` if it has. An
/// after-call delivery not gone out yet is rebuilt with the start's fields,
/// whether or not the scenario has a during-call webhook.
///
/// Stays whole: its steps share one transaction and the call's row lock, in
/// the order the module docs give; each is one statement.
pub(super) async fn join_start(
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

    let first = if c.scenario.needs_first_call(DeliveryKind::DuringCall)
        || c.scenario.needs_first_call(DeliveryKind::AfterCall)
    {
        first_call(tx, c.scenario.id, call.caller.as_str(), id, call.date).await?
    } else {
        false
    };
    let delivery = match c.scenario.during_call_url {
        Some(_) => {
            let (payload, cancelled, filtered_by) =
                c.scenario
                    .delivery(&call, DeliveryKind::DuringCall, c.rules.max_payload, first);
            let row = NewRow {
                call_id: id,
                scenario_id: c.scenario.id,
                kind: DeliveryKind::DuringCall,
                payload,
                due_in: std::time::Duration::ZERO,
                blocked_by: None,
                cancelled: cancelled.or(gone_out.then_some(CancelReason::CallAlreadyEnded)),
                filtered_by,
                parked: c.scenario.during_state.holds_deliveries(),
                recording_wait: None,
            };
            let delivery = insert_delivery(tx, row).await?;
            // The call has ended: its moment passes with its grace.
            let grace = c.scenario.during_call_grace(c.rules.during_call_grace);
            expire_during_call(tx, id, grace).await?;
            Some(delivery)
        }
        None => None,
    };
    if let Some(after) = held {
        // Sent with this start's fields, and after its webhook; with none to
        // wait for (no during-call URL, or its endpoint's health holds its
        // deliveries), due now unless its own endpoint holds it (parked).
        // Blocked, it is not parked (see the module docs): the during-call
        // delivery's end makes it due, and the claim parks it then if its
        // endpoint holds its deliveries.
        call.end = end;
        // A during-call delivery stored cancelled (too large, filtered) is
        // final: nothing waits for it.
        let blocked_by = delivery
            .as_ref()
            .filter(|d| d.cancelled.is_none() && !c.scenario.during_releases_after_call)
            .map(|d| d.id);
        // Its conditions are evaluated again, on the call as it now is.
        let (payload, cancelled, filtered_by) =
            c.scenario
                .delivery(&call, DeliveryKind::AfterCall, c.rules.max_payload, first);
        let due = sqlx::query_scalar!(
            r#"update deliveries
                  set blocked_by = case when $4::text is null then $2::uuid end,
                      parked = parked and $2::uuid is null and $4::text is null,
                      next_attempt_at = case when $2::uuid is null and not parked and $4::text is null
                                             then greatest(now(), recording_due_at) end,
                      state = case when $4::text is null then state else 'cancelled' end,
                      last_error = coalesce($4, last_error),
                      filtered_by = $5,
                      payload = $3, updated_at = now()
                where id = $1
            returning next_attempt_at is not null as "due!""#,
            after.id,
            blocked_by,
            payload,
            cancelled.map(CancelReason::as_str),
            filtered_by.map(sqlx::types::Json) as _,
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
