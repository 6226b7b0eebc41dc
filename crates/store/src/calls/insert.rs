//! The statements that add calls and deliveries.

use std::collections::HashMap;

use callhook_core::{Call, CancelReason, Condition, DeliveryKind, DeliveryState, Visit};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::DeliveryRef;
use crate::StoreError;

/// A call to insert, with its during-call delivery when `payload` is given.
pub(super) struct NewCall<'a> {
    pub call: &'a Call,
    pub scenario_id: Uuid,
    /// None for a call stored from its end event.
    pub start_hash: Option<&'a str>,
    /// The start time is an estimate (an end event without `date`).
    pub started_at_estimated: bool,
    pub payload: Option<String>,
    /// The delivery is stored cancelled, for this reason (its payload empty
    /// when too large).
    pub cancelled: Option<CancelReason>,
    /// The condition that did not hold (cancelled `filtered`).
    pub filtered_by: Option<Condition>,
    /// Inserted leased (token, seconds) for this process's dispatcher.
    pub lease: Option<(Uuid, f64)>,
    /// Its endpoint holds its deliveries: inserted parked.
    pub parked: bool,
}

/// A during-call delivery just inserted.
pub(crate) struct NewDelivery {
    pub delivery: DeliveryRef,
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub lease_token: Option<Uuid>,
}

/// One call as `jsonb_to_recordset` reads it (the column names).
#[derive(Serialize)]
struct CallRecord<'a> {
    ord: i32,
    id: &'a str,
    scenario_id: Uuid,
    caller: &'a str,
    callee: &'a str,
    started_at: DateTime<Utc>,
    start_hash: Option<&'a str>,
    started_at_estimated: bool,
    #[serde(flatten)]
    visit: &'a Visit,
}

/// Inserts calls (each unless its id exists; ids must be distinct) with
/// their during-call deliveries: one statement, in the given order. Returns
/// the calls inserted, each with its delivery if it has one; a call missing
/// from the map existed and nothing was written for it.
///
/// Stays whole: one statement and the columns it binds.
pub(super) async fn insert_calls(
    conn: &mut PgConnection,
    rows: Vec<NewCall<'_>>,
) -> Result<HashMap<String, Option<NewDelivery>>, StoreError> {
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let n = rows.len();
    let mut records = Vec::with_capacity(n);
    let mut ords = Vec::with_capacity(n);
    let mut delivery_ids = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut lease_secs = Vec::with_capacity(n);
    let mut parked = Vec::with_capacity(n);
    let mut cancelled = Vec::with_capacity(n);
    let mut filtered_by = Vec::with_capacity(n);
    for (ord, r) in rows.iter().enumerate() {
        let ord = i32::try_from(ord).expect("a batch holds at most 1000 calls");
        records.push(CallRecord {
            ord,
            id: &r.call.id,
            scenario_id: r.scenario_id,
            caller: r.call.caller.as_str(),
            callee: r.call.callee.as_str(),
            started_at: r.call.date,
            start_hash: r.start_hash,
            started_at_estimated: r.started_at_estimated,
            visit: &r.call.visit,
        });
        ords.push(ord);
        delivery_ids.push(Uuid::now_v7());
        payloads.push(r.payload.as_deref());
        tokens.push(r.lease.map(|(t, _)| t));
        lease_secs.push(r.lease.map(|(_, s)| s));
        parked.push(r.parked && r.cancelled.is_none());
        cancelled.push(r.cancelled.map(CancelReason::as_str));
        filtered_by.push(r.filtered_by.as_ref().map(Json));
    }
    let records = Json(records);
    let created = sqlx::query!(
        r#"with input as (
               select t.*, p.delivery_id, p.payload, p.lease_token, p.lease_secs, p.parked, p.cancelled,
                      p.filtered_by
                 from jsonb_to_recordset($1::jsonb) as t(
                        ord int, id text, scenario_id uuid, caller text, callee text,
                        started_at timestamptz, start_hash text, started_at_estimated bool, visit_id text, marker text,
                        order_id bigint, google_client_id text, landing_page text, domain text,
                        city text, country text, ip text, first_visit text, referrer text,
                        utm_source text, utm_medium text, utm_campaign text, utm_term text,
                        utm_content text, roistat_param_1 text, roistat_param_2 text,
                        roistat_param_3 text, roistat_param_4 text, roistat_param_5 text,
                        metrika_client_id text, source_level_1 text, source_level_2 text)
                 join unnest($2::int4[], $3::uuid[], $4::text[], $5::uuid[], $6::float8[], $7::bool[], $8::text[],
                             $9::jsonb[])
                      as p(ord, delivery_id, payload, lease_token, lease_secs, parked, cancelled, filtered_by)
                      on p.ord = t.ord
           ), new_call as (
               insert into calls (id, scenario_id, caller, callee, started_at, visit_id, marker, order_id,
                                  google_client_id, landing_page, domain, city, country, ip, first_visit, referrer,
                                  utm_source, utm_medium, utm_campaign, utm_term, utm_content,
                                  roistat_param_1, roistat_param_2, roistat_param_3, roistat_param_4,
                                  roistat_param_5, metrika_client_id, source_level_1, source_level_2, start_hash,
                                  started_at_estimated)
               select id, scenario_id, caller, callee, started_at, visit_id, marker, order_id,
                      google_client_id, landing_page, domain, city, country, ip, first_visit, referrer,
                      utm_source, utm_medium, utm_campaign, utm_term, utm_content,
                      roistat_param_1, roistat_param_2, roistat_param_3, roistat_param_4,
                      roistat_param_5, metrika_client_id, source_level_1, source_level_2, start_hash,
                      started_at_estimated
                 from input
                order by ord
               on conflict (id) do nothing
               returning id
           ), new_delivery as (
               insert into deliveries (id, call_id, scenario_id, kind, payload, next_attempt_at, lease_token,
                                       parked, state, last_error, filtered_by)
               select i.delivery_id, i.id, i.scenario_id, 'during_call', i.payload,
                      case when not i.parked and i.cancelled is null
                           then now() + make_interval(secs => coalesce(i.lease_secs, 0)) end,
                      i.lease_token, i.parked, coalesce(case when i.cancelled is not null then 'cancelled' end, 'pending'),
                      i.cancelled, i.filtered_by
                 from input i
                 join new_call c on c.id = i.id
                where i.payload is not null
                order by i.ord
               returning id, call_id, kind, state, created_at, lease_token, last_error
           )
           select c.id as "call_id!", d.id as "delivery_id?", d.kind as "kind?: DeliveryKind",
                  d.state as "state?: DeliveryState", d.last_error as "cancelled?: CancelReason",
                  d.created_at as "created_at?", d.lease_token
             from new_call c
             left join new_delivery d on d.call_id = c.id"#,
        records as _,
        &ords,
        &delivery_ids,
        &payloads as _,
        &tokens as _,
        &lease_secs as _,
        &parked,
        &cancelled as _,
        &filtered_by as _,
    )
    .fetch_all(&mut *conn)
    .await?;
    // Only a leased delivery's body is needed after the insert (it is
    // handed to this process's dispatcher); the others' are let go now.
    let mut payload_of: HashMap<&str, Option<String>> = rows
        .into_iter()
        .map(|r| {
            let payload = r
                .payload
                .map(|p| if r.lease.is_some() { p } else { String::new() });
            (r.call.id.as_str(), payload)
        })
        .collect();
    Ok(created
        .into_iter()
        .map(|row| {
            let payload = payload_of.remove(row.call_id.as_str()).flatten();
            let delivery = match (
                row.delivery_id,
                row.kind,
                row.state,
                row.created_at,
                payload,
            ) {
                (Some(id), Some(kind), Some(state), Some(created_at), Some(payload)) => {
                    Some(NewDelivery {
                        delivery: DeliveryRef {
                            id,
                            kind,
                            state,
                            cancelled: row.cancelled,
                        },
                        payload,
                        created_at,
                        lease_token: row.lease_token,
                    })
                }
                _ => None,
            };
            (row.call_id, delivery)
        })
        .collect())
}

/// A delivery to add beside a call already stored.
pub(super) struct NewRow<'a> {
    pub call_id: &'a str,
    pub scenario_id: Uuid,
    pub kind: DeliveryKind,
    pub payload: String,
    /// When it is due (ignored when blocked or cancelled).
    pub due_in: std::time::Duration,
    /// The during-call delivery it waits for.
    pub blocked_by: Option<Uuid>,
    /// Stored cancelled, for this reason, instead of pending.
    pub cancelled: Option<CancelReason>,
    /// The condition that did not hold (cancelled `filtered`).
    pub filtered_by: Option<Condition>,
    /// Its endpoint holds its deliveries: it waits, parked.
    pub parked: bool,
    /// Held this long for its call's recording (`recording_wait`): not due
    /// before, even once nothing else holds it.
    pub recording_wait: Option<std::time::Duration>,
}

/// Inserts one delivery and says what it is.
pub(super) async fn insert_delivery(
    tx: &mut PgConnection,
    row: NewRow<'_>,
) -> Result<DeliveryRef, StoreError> {
    let parked = row.parked && row.cancelled.is_none();
    let (state, due) = match (row.cancelled, row.blocked_by) {
        (Some(_), _) => (DeliveryState::Cancelled, None),
        (None, Some(_)) => (DeliveryState::Pending, None),
        (None, None) if parked => (DeliveryState::Pending, None),
        (None, None) => {
            let due_in = row.due_in.max(row.recording_wait.unwrap_or_default());
            (DeliveryState::Pending, Some(due_in.as_secs_f64()))
        }
    };
    Ok(sqlx::query_as!(
        DeliveryRef,
        r#"insert into deliveries (id, call_id, scenario_id, kind, payload, state, next_attempt_at,
                                   blocked_by, last_error, parked, filtered_by, recording_due_at)
           values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8, $9, $10, $11,
                   now() + make_interval(secs => $12))
           returning id, kind as "kind: DeliveryKind", state as "state: DeliveryState",
                     last_error as "cancelled?: CancelReason""#,
        Uuid::now_v7(),
        row.call_id,
        row.scenario_id,
        row.kind as _,
        row.payload,
        state as _,
        due,
        // A cancelled delivery waits for nothing.
        row.blocked_by.filter(|_| row.cancelled.is_none()),
        row.cancelled.map(CancelReason::as_str),
        parked,
        row.filtered_by.map(Json) as _,
        row.recording_wait
            .filter(|_| row.cancelled.is_none())
            .map(|d| d.as_secs_f64()),
    )
    .fetch_one(&mut *tx)
    .await?)
}
