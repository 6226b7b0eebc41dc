//! What changes an endpoint's state besides attempts' results: operators'
//! pauses and enables, and the probes of paused endpoints.

use std::time::Duration;

use callhook_core::{DeliveryKind, EndpointState, Header, StoredSecret, Transition};
use chrono::Utc;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{endpoint, lock, save, settle, EndpointRow, HealthSettings};
use crate::queue::Claimed;
use crate::StoreError;

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
        // Healthy already: only its failure count (if any) is reset.
        if h != row.health() {
            save(tx, scenario_id, kind, &h).await?;
        }
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
        let probe = crate::queue::query_claimed!(
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
                    where d.id = pick.id and d.parked"#,
            r#"
               )"#,
            lease_token = "$3",
            endpoint_state = "'paused'::text",
            probe = "true",
            r#"from leased c
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
