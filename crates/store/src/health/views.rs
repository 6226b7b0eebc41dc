//! Endpoints as operators see them (the `endpoint_health` view).

use callhook_core::{DeliveryKind, EndpointState};
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

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
    /// Pending and due now (waiting for a seat or for its cap).
    pub deliveries_due: i64,
    /// Being sent now (claimed, lease running), by every dispatcher.
    pub deliveries_in_flight: i64,
    /// Its own in-flight limit (`None`: the dispatcher's default).
    pub max_in_flight: Option<i32>,
    /// The in-flight cap in force when below the default: lowered after
    /// 429/503/timeouts, or its own `max_in_flight` (`None`: the default).
    pub cap: Option<i32>,
    pub max_per_second: Option<f32>,
}

/// An operator's limits for one endpoint (`None`: no limit of its own).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EndpointLimits {
    pub max_in_flight: Option<i32>,
    pub max_per_second: Option<f32>,
}

/// Sets an endpoint's limits; a lowered cap starts again from them.
pub async fn set_limits(
    e: impl PgExecutor<'_>,
    scenario_id: Uuid,
    kind: DeliveryKind,
    limits: EndpointLimits,
) -> Result<(), StoreError> {
    let r = sqlx::query!(
        "update endpoints
            set max_in_flight = $3, max_per_second = $4, cap = null, cap_changed_at = now(),
                updated_at = now()
          where scenario_id = $1 and kind = $2",
        scenario_id,
        kind as _,
        limits.max_in_flight,
        limits.max_per_second,
    )
    .execute(e)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
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
                  deliveries_waiting as "deliveries_waiting!",
                  deliveries_due as "deliveries_due!", deliveries_in_flight as "deliveries_in_flight!",
                  max_in_flight, cap, max_per_second
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
