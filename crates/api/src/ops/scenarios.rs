//! Scenarios: create, save, delete, rotate the signing secret.

use callhook_core::{DeliveryKind, EndpointKind, SigningSecret};
use callhook_store::scenarios::{self, Scenario, ScenarioSettings};
use uuid::Uuid;

use super::audit::{self, AuditEvent, Change};
pub(crate) use super::durations::duration_text;
use super::scenario_error;
pub(crate) use super::scenario_input::{
    ConditionSchema, CustomFieldSchema, HeaderSchema, ScenarioInput, StaticNumberView,
};
use crate::auth::Actor;
use crate::{ApiError, AppState};

/// Creates a scenario with a new signing secret.
pub(crate) async fn create(
    state: &AppState,
    actor: &Actor,
    input: ScenarioInput,
) -> Result<Scenario, ApiError> {
    let mut settings = input
        .check(state.settings.max_payload_bytes)
        .map_err(ApiError::from)?;
    // The id first: the sealed secrets are bound to it.
    let id = Uuid::now_v7();
    seal_headers(state, id, &mut settings, None)?;
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
    let mut settings = input
        .check(state.settings.max_payload_bytes)
        .map_err(ApiError::from)?;
    let stored = scenarios::get(&state.pool, id)
        .await
        .map_err(scenario_error(id))?;
    seal_headers(state, id, &mut settings, Some(&stored))?;
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

/// Seals the secret header values a save gives, bound to the scenario and
/// the header; a secret header given with no value keeps the value stored
/// for it (`stored`: the scenario as it is), and is refused when there is
/// none.
fn seal_headers(
    state: &AppState,
    id: Uuid,
    settings: &mut ScenarioSettings,
    stored: Option<&Scenario>,
) -> Result<(), ApiError> {
    for kind in EndpointKind::ALL {
        let (given, kept) = match kind {
            EndpointKind::DuringCall => (
                &mut settings.during_call_headers,
                stored.map(|s| s.during_call_headers.0.as_slice()),
            ),
            EndpointKind::AfterCall => (
                &mut settings.after_call_headers,
                stored.map(|s| s.after_call_headers.0.as_slice()),
            ),
        };
        for (i, h) in given.iter_mut().enumerate().filter(|(_, h)| h.secret) {
            let field = h.sealed_field(kind);
            h.value = match h.value.take() {
                Some(text) => Some(state.sealer.seal_text(&text, id, &field)),
                None => {
                    let same = kept
                        .unwrap_or_default()
                        .iter()
                        .find(|k| k.secret && k.name.eq_ignore_ascii_case(&h.name));
                    let Some(value) = same.and_then(|k| k.value.clone()) else {
                        return Err(ApiError::unprocessable(
                            format!("{}[{i}].value", callhook_core::headers::list_name(kind)),
                            "required",
                            format!(
                                "secret header {} has no stored value to keep: send its value",
                                h.name
                            ),
                        ));
                    };
                    Some(value)
                }
            };
        }
    }
    Ok(())
}
