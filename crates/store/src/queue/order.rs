//! Keeping a call's after-call delivery behind its during-call delivery, and
//! cancelling what can no longer be sent.

use callhook_core::{CancelReason, DeliveryKind};
use sqlx::PgConnection;
use uuid::Uuid;

use super::notify;
use crate::StoreError;

/// Makes the after-call deliveries waiting for these (now final) during-call
/// deliveries due now; returns how many.
pub(crate) async fn unblock(tx: &mut PgConnection, finished: &[Uuid]) -> Result<u64, StoreError> {
    if finished.is_empty() {
        return Ok(0);
    }
    let r = sqlx::query!(
        "update deliveries
            set blocked_by = null, next_attempt_at = greatest(now(), recording_due_at),
                updated_at = now()
          where blocked_by = any($1)",
        finished
    )
    .execute(&mut *tx)
    .await?;
    Ok(r.rows_affected())
}

/// Makes the after-call deliveries of these calls wait again for their
/// during-call delivery where that one is pending (after an operator's
/// requeue, which may have made both pending).
pub(crate) async fn block_behind_during_call(
    tx: &mut PgConnection,
    call_ids: &[String],
) -> Result<(), StoreError> {
    sqlx::query!(
        "update deliveries a
            set blocked_by = p.id, next_attempt_at = null, updated_at = now()
           from deliveries p
          where a.call_id = any($1) and a.kind = 'after_call' and a.state = 'pending'
            and a.lease_token is null and a.blocked_by is null
            and p.call_id = a.call_id and p.kind = 'during_call' and p.state = 'pending'",
        call_ids
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Cancels a scenario's pending deliveries of these kinds (its URL was
/// removed, or it was deleted), and makes due the after-call deliveries that
/// waited for a during-call one cancelled here. A delivery being sent right
/// now (leased, lease running) is left to its worker: it is recorded, and
/// cancelled at its next claim, which finds the URL gone. Returns the kind
/// of each delivery cancelled.
pub(crate) async fn cancel_pending(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    kinds: &[DeliveryKind],
    reason: CancelReason,
) -> Result<Vec<DeliveryKind>, StoreError> {
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let cancelled = sqlx::query!(
        r#"update deliveries
              set state = 'cancelled', last_error = $3, next_attempt_at = null, blocked_by = null,
                  parked = false,
                  lease_token = null, updated_at = now()
            where scenario_id = $1 and state = 'pending' and kind = any($2)
              and (lease_token is null or next_attempt_at <= now())
        returning id, kind as "kind: DeliveryKind""#,
        scenario_id,
        &kinds as &[&str],
        reason.as_str(),
    )
    .fetch_all(&mut *tx)
    .await?;
    let during: Vec<Uuid> = cancelled
        .iter()
        .filter(|c| c.kind == DeliveryKind::DuringCall)
        .map(|c| c.id)
        .collect();
    if unblock(tx, &during).await? > 0 {
        notify(&mut *tx).await?;
    }
    Ok(cancelled.into_iter().map(|c| c.kind).collect())
}

/// Cancels the held (parked) during-call deliveries whose call ended its
/// grace ago (`call_ended`: claims never see a parked one), at most 1,000 a
/// call, and makes the after-call deliveries waiting for them due. Returns
/// how many were cancelled.
pub async fn expire_held(pool: &sqlx::PgPool) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await?;
    let expired: Vec<Uuid> = sqlx::query_scalar!(
        "update deliveries d
            set state = 'cancelled', last_error = $1, parked = false, next_attempt_at = null,
                updated_at = now()
          where d.id in (select id from deliveries
                          where parked and state = 'pending' and expires_at <= now()
                            and kind = 'during_call'
                          order by expires_at limit 1000
                            for update skip locked)
      returning d.id",
        CancelReason::CallEnded.as_str(),
    )
    .fetch_all(&mut *tx)
    .await?;
    if expired.is_empty() {
        return Ok(0);
    }
    if unblock(&mut tx, &expired).await? > 0 {
        notify(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(expired.len() as u64)
}
