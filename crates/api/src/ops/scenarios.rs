//! Scenarios: create, save, delete, rotate the signing secret.

use callhook_core::{DeliveryKind, SigningSecret};
use callhook_store::scenarios::{self, Scenario};
use uuid::Uuid;

use super::audit::{self, AuditEvent, Change};
use super::scenario_error;
pub(crate) use super::scenario_input::{
    ConditionSchema, CustomFieldSchema, ScenarioInput, StaticNumberView,
};
use crate::auth::Actor;
use crate::{ApiError, AppState};

/// Creates a scenario with a new signing secret.
pub(crate) async fn create(
    state: &AppState,
    actor: &Actor,
    input: ScenarioInput,
) -> Result<Scenario, ApiError> {
    let settings = input
        .check(state.settings.max_payload_bytes)
        .map_err(ApiError::from)?;
    // The id first: the sealed secret is bound to it.
    let id = Uuid::now_v7();
    let secret = state.sealer.seal(&SigningSecret::generate(), id);
    let s = scenarios::create(&state.pool, id, &settings, &secret).await?;
    tracing::info!(scenario_id = %s.id, "scenario created");
    let event = AuditEvent::ScenarioCreate {
        name: s.name.clone(),
        during_call_url: s.during_call_url.clone(),
        after_call_url: s.after_call_url.clone(),
        numbers: s.numbers.clone(),
    };
    audit::record(state, actor, Some(s.id), event).await;
    Ok(s)
}

/// Saves a scenario's whole settings. Pending retries use the new URLs; a
/// removed URL cancels them (counted); an endpoint a new URL re-enables is
/// announced.
pub(crate) async fn save(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    input: ScenarioInput,
) -> Result<Scenario, ApiError> {
    let settings = input
        .check(state.settings.max_payload_bytes)
        .map_err(ApiError::from)?;
    let (s, saved) = scenarios::update(&state.pool, id, &settings, &state.settings.health)
        .await
        .map_err(scenario_error(id))?;
    count_cancelled(&saved.cancelled);
    for (kind, t) in saved.enabled {
        callhook_dispatch::transitions::announce(id, kind, t, None);
    }
    tracing::info!(scenario_id = %id, cancelled = saved.cancelled.len(), "scenario saved");
    let event = AuditEvent::ScenarioSave {
        name: s.name.clone(),
        during_call_url: Change {
            before: saved.before.0,
            after: s.during_call_url.clone(),
        },
        after_call_url: Change {
            before: saved.before.1,
            after: s.after_call_url.clone(),
        },
        numbers: s.numbers.clone(),
        cancelled: saved.cancelled.len(),
    };
    audit::record(state, actor, Some(id), event).await;
    Ok(s)
}

/// Deletes a scenario: its pending deliveries are cancelled (how many is
/// the answer), its history stays.
pub(crate) async fn delete(state: &AppState, actor: &Actor, id: Uuid) -> Result<usize, ApiError> {
    let cancelled = scenarios::delete(&state.pool, id)
        .await
        .map_err(scenario_error(id))?;
    count_cancelled(&cancelled);
    tracing::info!(scenario_id = %id, cancelled = cancelled.len(), "scenario deleted");
    let event = AuditEvent::ScenarioDelete {
        cancelled: cancelled.len(),
    };
    audit::record(state, actor, Some(id), event).await;
    Ok(cancelled.len())
}

/// Deliveries a save or a delete cancelled count as the dispatcher's
/// cancellations do.
fn count_cancelled(kinds: &[DeliveryKind]) {
    for kind in kinds {
        metrics::counter!("callhook_deliveries_total", "kind" => kind.as_str(), "outcome" => "cancelled")
            .increment(1);
    }
}

/// Rotates the signing secret: for `CALLHOOK_SECRET_ROTATION_OVERLAP`
/// webhooks carry a signature with each secret.
pub(crate) async fn rotate_secret(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
) -> Result<Scenario, ApiError> {
    let secret = state.sealer.seal(&SigningSecret::generate(), id);
    let overlap = state.settings.secret_rotation_overlap;
    let s = scenarios::rotate_secret(&state.pool, id, &secret, overlap)
        .await
        .map_err(scenario_error(id))?;
    tracing::info!(scenario_id = %id, overlap_until = ?s.previous_secret_expires_at, "signing secret rotated");
    let event = AuditEvent::SecretRotate {
        previous_secret_expires_at: s.previous_secret_expires_at,
    };
    audit::record(state, actor, Some(id), event).await;
    Ok(s)
}
