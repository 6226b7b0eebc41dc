//! What an endpoint's transitions do to its deliveries: park them, drain
//! them, and queue the operator event.

use callhook_core::health::{event_payload, EventData};
use callhook_core::{DeliveryKind, Transition};
use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use super::endpoint;
use crate::StoreError;

/// Parks the endpoint's pending deliveries (those not being sent right
/// now). When its health holds a during-call endpoint (not an operator's
/// pause), after-call deliveries waiting for its during-call ones go.
pub(super) async fn hold(
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
            set blocked_by = null, next_attempt_at = greatest(now(), a.recording_due_at),
                updated_at = now()
           from deliveries d, endpoints e
          where d.scenario_id = $1 and d.kind = 'during_call' and d.state = 'pending'
            and a.blocked_by = d.id
            and e.scenario_id = $1 and e.kind = 'during_call'
            and during_call_released(e.state, e.next_probe_at)",
        scenario_id,
    )
    .execute(&mut *tx)
    .await?;
    Ok(r.rows_affected())
}

/// Parks these deliveries (pending or just failed) of an endpoint that
/// holds its deliveries.
pub(super) async fn park_these(tx: &mut PgConnection, ids: &[Uuid]) -> Result<(), StoreError> {
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
/// itself held) wait for it again. A row waiting for its during-call
/// delivery (`blocked_by`) is never made due here: that one's end does it.
/// Returns how many will go.
pub(super) async fn drain(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    kind: DeliveryKind,
    per_second: u32,
) -> Result<u64, StoreError> {
    let r = sqlx::query!(
        "with p as (
             select id, row_number() over (order by id) - 1 as n
               from deliveries where scenario_id = $1 and kind = $2 and parked
                and blocked_by is null
         )
         update deliveries d
            set parked = false,
                next_attempt_at = greatest(now() + make_interval(secs => p.n / $3::float8),
                                           d.recording_due_at),
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
    // during-call delivery, unless that one's endpoint's health holds it
    // (an operator's pause does not: the after-call delivery waits).
    sqlx::query!(
        "update deliveries a
            set blocked_by = p.id, next_attempt_at = null, updated_at = now()
           from deliveries p, endpoints e
          where a.scenario_id = $1 and a.kind = 'after_call' and a.state = 'pending'
            and not a.parked and a.blocked_by is null and a.lease_token is null
            and p.call_id = a.call_id and p.kind = 'during_call' and p.state = 'pending'
            and e.scenario_id = p.scenario_id and e.kind = 'during_call'
            and not during_call_released(e.state, e.next_probe_at)",
        scenario_id,
    )
    .execute(&mut *tx)
    .await?;
    Ok(drained)
}

/// Queues the operator event of a transition (a delivery of its own kind,
/// sent through the same queue and retries as every webhook).
pub(super) async fn queue_event(
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
