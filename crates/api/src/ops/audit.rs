//! The audit log's events: one typed variant per admin operation, written
//! by the operation itself (so both front ends record the same thing).

use callhook_core::{DeliveryKind, DeliveryState, EndpointKind};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Actor;
use crate::AppState;

/// A URL before and after a save.
#[derive(Debug, Serialize)]
pub(crate) struct Change<T> {
    pub(crate) before: T,
    pub(crate) after: T,
}

/// What an admin change recorded: its action and its details (`details`
/// as JSON, never a secret).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum AuditEvent {
    ScenarioCreate {
        name: String,
        during_call_url: Option<String>,
        after_call_url: Option<String>,
        numbers: Vec<String>,
    },
    ScenarioSave {
        name: String,
        during_call_url: Change<Option<String>>,
        after_call_url: Change<Option<String>>,
        numbers: Vec<String>,
        /// Pending deliveries the save cancelled (a URL removed).
        cancelled: usize,
    },
    ScenarioDelete {
        cancelled: usize,
    },
    SecretRotate {
        previous_secret_expires_at: Option<DateTime<Utc>>,
    },
    DeliveryRetry {
        delivery_id: Uuid,
        call_id: Option<String>,
        kind: DeliveryKind,
        /// Its body was built again from the call as it is now.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        rebuilt: bool,
    },
    DeliveriesRetry {
        requeued: u64,
        call_id: Option<String>,
        state: Option<DeliveryState>,
        kind: Option<DeliveryKind>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    },
    EndpointPause {
        kind: EndpointKind,
        transition: Option<&'static str>,
        deliveries: u64,
    },
    EndpointEnable {
        kind: EndpointKind,
        transition: Option<&'static str>,
        deliveries: u64,
    },
    EndpointSendNow {
        kind: EndpointKind,
        deliveries: u64,
    },
    EndpointLimits {
        kind: EndpointKind,
        max_in_flight: Option<i32>,
        max_per_second: Option<f32>,
    },
    TestSend {
        kind: EndpointKind,
        url: String,
        status: Option<u16>,
        error: Option<String>,
    },
}

impl AuditEvent {
    /// Its name in the log's `action` column.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            Self::ScenarioCreate { .. } => "scenario.create",
            Self::ScenarioSave { .. } => "scenario.save",
            Self::ScenarioDelete { .. } => "scenario.delete",
            Self::SecretRotate { .. } => "secret.rotate",
            Self::DeliveryRetry { .. } => "delivery.retry",
            Self::DeliveriesRetry { .. } => "deliveries.retry",
            Self::EndpointPause { .. } => "endpoint.pause",
            Self::EndpointEnable { .. } => "endpoint.enable",
            Self::EndpointSendNow { .. } => "endpoint.send_now",
            Self::EndpointLimits { .. } => "endpoint.limits",
            Self::TestSend { .. } => "scenario.test",
        }
    }
}

/// Records an admin change (after it is done). A failure to record is
/// logged, not answered: the change stands.
pub(crate) async fn record(
    state: &AppState,
    actor: &Actor,
    scenario_id: Option<Uuid>,
    event: AuditEvent,
) {
    let action = event.action();
    let details = serde_json::to_value(&event).unwrap_or_default();
    if let Err(e) =
        callhook_store::audit::record(&state.pool, action, scenario_id, &actor.0, details).await
    {
        tracing::error!(error = %e, action, ?scenario_id, actor = %actor.0,
            "could not write the audit log");
    }
}
