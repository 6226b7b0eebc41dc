//! Endpoints: pause, enable, their own limits. An endpoint is a scenario's
//! during-call URL or its after-call URL; the health rules are
//! `callhook_core::health`, their SQL `callhook_store::health`.

use callhook_core::{EndpointKind, FieldError};
use callhook_store::health::{self, EndpointLimits, EndpointRow, Switched};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::audit::{self, AuditEvent};
use super::{no_scenario, scenario_error_at_id};
use crate::auth::Actor;
use crate::{ApiError, AppState};

/// What an operator does to an endpoint by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointAction {
    /// Its deliveries wait (their retry schedule unspent); no probe goes.
    Pause,
    /// Healthy again; its waiting deliveries drain, oldest first.
    Enable,
}

impl EndpointAction {
    /// `pause` or `enable` (the console's path).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "pause" => Some(Self::Pause),
            "enable" => Some(Self::Enable),
            _ => None,
        }
    }

    /// Its name in the console's path.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Enable => "enable",
        }
    }
}

/// A path's `{kind}`: `during_call` or `after_call`, else a 422 at `kind`.
pub(crate) fn kind_param(kind: &str) -> Result<EndpointKind, ApiError> {
    Ok(EndpointKind::parse(kind, "kind")?)
}

/// Pauses or enables an endpoint; its transition (if any) is announced.
pub(crate) async fn switch(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    kind: EndpointKind,
    action: EndpointAction,
) -> Result<Switched, ApiError> {
    let policy = &state.settings.health;
    // Enabling: what waits for a retry goes now too, not at its next try.
    // Brought forward first, so the parked ones the enable drains (at the
    // drain rate) are neither counted twice nor hurried.
    let forwarded = match action {
        EndpointAction::Enable => bring_forward(state, id, kind).await?,
        EndpointAction::Pause => 0,
    };
    let mut s = match action {
        EndpointAction::Pause => health::pause(&state.pool, id, kind.into(), policy).await,
        EndpointAction::Enable => health::enable(&state.pool, id, kind.into(), policy).await,
    }
    .map_err(scenario_error_at_id(id))?;
    s.deliveries += forwarded;
    if let Some(t) = s.transition {
        let last_error = s.endpoint.last_error.as_deref();
        callhook_dispatch::transitions::announce(id, kind.into(), t, last_error);
    }
    let transition = s.transition.map(|t| t.to.as_str());
    let deliveries = s.deliveries;
    let event = match action {
        EndpointAction::Pause => AuditEvent::EndpointPause {
            kind,
            transition,
            deliveries,
        },
        EndpointAction::Enable => AuditEvent::EndpointEnable {
            kind,
            transition,
            deliveries,
        },
    };
    audit::record(state, actor, Some(id), event).await;
    Ok(s)
}

/// Makes an endpoint's pending deliveries due now, at `CALLHOOK_DRAIN_RATE`
/// (per-call order kept); how many.
pub(crate) async fn bring_forward(
    state: &AppState,
    id: Uuid,
    kind: EndpointKind,
) -> Result<u64, ApiError> {
    let filter = callhook_store::log::DeliveryFilter {
        scenario_id: Some(id),
        kind: Some(kind.into()),
        ..Default::default()
    };
    let rate = state.settings.health.drain_per_second;
    Ok(callhook_store::log::send_now(&state.pool, &filter, rate).await?)
}

/// "Send now" for an endpoint (its receiver is fixed): every delivery
/// waiting for a retry goes now, at `CALLHOOK_DRAIN_RATE`; a call's
/// after-call webhook still after its during-call one. How many.
pub(crate) async fn send_now(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    kind: EndpointKind,
) -> Result<u64, ApiError> {
    health::endpoint(&state.pool, id, kind.into())
        .await?
        .ok_or_else(|| no_scenario(id).with_field("id"))?;
    let n = bring_forward(state, id, kind).await?;
    tracing::info!(scenario_id = %id, %kind, deliveries = n, "endpoint: send now");
    let event = AuditEvent::EndpointSendNow {
        kind,
        deliveries: n,
    };
    audit::record(state, actor, Some(id), event).await;
    Ok(n)
}

/// An endpoint's own limits; null or absent: none of its own.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsBody {
    /// Webhooks in flight at once to this endpoint, across every dispatcher
    /// (1 to 1000; null: `CALLHOOK_ENDPOINT_MAX_IN_FLIGHT`).
    #[serde(default)]
    pub(crate) max_in_flight: Option<i32>,
    /// Webhooks per second at most (above 0, up to 10000; null: no rate limit).
    #[serde(default)]
    pub(crate) max_per_second: Option<f32>,
}

impl LimitsBody {
    fn check(&self) -> Result<EndpointLimits, FieldError> {
        if let Some(n) = self.max_in_flight {
            if !(1..=1000).contains(&n) {
                return Err(FieldError::new(
                    "max_in_flight",
                    "out_of_range",
                    "max_in_flight must be between 1 and 1000, or null for the default",
                ));
            }
        }
        if let Some(r) = self.max_per_second {
            if !(r.is_finite() && r > 0.0 && r <= 10_000.0) {
                return Err(FieldError::new(
                    "max_per_second",
                    "out_of_range",
                    "max_per_second must be above 0 and at most 10000, or null for no limit",
                ));
            }
        }
        Ok(EndpointLimits {
            max_in_flight: self.max_in_flight,
            max_per_second: self.max_per_second,
        })
    }
}

/// Sets an endpoint's own limits (claims on every dispatcher honour them
/// at once); the endpoint as it stands after.
pub(crate) async fn set_limits(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    kind: EndpointKind,
    input: &LimitsBody,
) -> Result<EndpointRow, ApiError> {
    let limits = input.check()?;
    health::set_limits(&state.pool, id, kind.into(), limits)
        .await
        .map_err(scenario_error_at_id(id))?;
    let event = AuditEvent::EndpointLimits {
        kind,
        max_in_flight: limits.max_in_flight,
        max_per_second: limits.max_per_second,
    };
    audit::record(state, actor, Some(id), event).await;
    health::endpoint(&state.pool, id, kind.into())
        .await?
        .ok_or_else(|| no_scenario(id).with_field("id"))
}
