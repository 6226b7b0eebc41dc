//! Every endpoint transition is a log line and a metric, wherever it
//! happened (a dispatcher recording results, an operator's pause or enable,
//! a save that changed a URL).

use callhook_core::{DeliveryKind, Transition};
use callhook_store::health::Changed;
use uuid::Uuid;

/// Logs and counts one transition.
pub fn report(changed: &Changed) {
    announce(
        changed.scenario_id,
        changed.kind,
        changed.transition,
        changed.last_error.as_deref(),
    );
}

/// Logs and counts one transition of the endpoint (`scenario_id`, `kind`).
pub fn announce(scenario_id: Uuid, kind: DeliveryKind, t: Transition, last_error: Option<&str>) {
    metrics::counter!("callhook_endpoint_transitions_total", "to" => t.to.as_str()).increment(1);
    tracing::warn!(
        %scenario_id, kind = %kind, from = %t.from, to = %t.to, last_error,
        event = t.event_type(), "endpoint health changed"
    );
}
