//! The dry run of delivery rules: how many of a scenario's last 1,000 calls
//! each webhook would have been sent for under the conditions given, with a
//! few call ids on each side. Nothing is stored or sent.

use callhook_core::{Condition, EndpointKind, Filter, Timezone};
use callhook_store::calls::RecentCall;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::scenario_error_at_id;
use super::scenarios::ConditionSchema;
use crate::{ApiError, AppState};

/// Calls a dry run looks at: the scenario's last ones.
pub(crate) const CALLS: i64 = 1000;
/// Call ids shown on each side.
const EXAMPLES: usize = 5;

/// The conditions to try (absent: none, every call).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterPreviewInput {
    #[serde(default)]
    #[schema(value_type = Option<Vec<ConditionSchema>>)]
    pub(crate) during_call_filter: Option<Vec<Condition>>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<ConditionSchema>>)]
    pub(crate) after_call_filter: Option<Vec<Condition>>,
}

/// What one webhook's conditions would have done.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct FilterOutcome {
    /// Calls it would have been sent for.
    pub(crate) sent: usize,
    /// Calls it would have been filtered for (`cancelled` / `filtered`).
    pub(crate) filtered: usize,
    /// A few of the calls on each side, newest first.
    pub(crate) sent_calls: Vec<String>,
    pub(crate) filtered_calls: Vec<String>,
}

/// The dry run's answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FilterPreview {
    /// Calls looked at (the scenario's last, at most 1,000).
    pub(crate) calls: usize,
    pub(crate) during_call: FilterOutcome,
    /// Over the calls that have ended (the after-call webhook's).
    pub(crate) after_call: FilterOutcome,
}

/// Runs `input`'s conditions over the scenario's last calls, as a save would
/// check them (a bad condition is the same `422`).
pub(crate) async fn run(
    state: &AppState,
    id: Uuid,
    input: FilterPreviewInput,
) -> Result<FilterPreview, ApiError> {
    let during = Filter::parse(
        input.during_call_filter.unwrap_or_default(),
        EndpointKind::DuringCall,
    )?;
    let after = Filter::parse(
        input.after_call_filter.unwrap_or_default(),
        EndpointKind::AfterCall,
    )?;
    let scenario = callhook_store::scenarios::get(&state.pool, id)
        .await
        .map_err(scenario_error_at_id(id))?;
    let tz = scenario.tz()?;
    let calls = callhook_store::calls::recent(&state.pool, id, CALLS).await?;
    Ok(FilterPreview {
        calls: calls.len(),
        during_call: outcome(&during, tz, calls.iter()),
        after_call: outcome(&after, tz, calls.iter().filter(|c| c.call.end.is_some())),
    })
}

fn outcome<'a>(
    filter: &Filter,
    tz: Timezone,
    calls: impl Iterator<Item = &'a RecentCall>,
) -> FilterOutcome {
    let mut o = FilterOutcome::default();
    for c in calls {
        let passes = filter.first_failing(&c.call, tz, c.first_call).is_none();
        let (count, examples) = if passes {
            (&mut o.sent, &mut o.sent_calls)
        } else {
            (&mut o.filtered, &mut o.filtered_calls)
        };
        *count += 1;
        if examples.len() < EXAMPLES {
            examples.push(c.call.id.clone());
        }
    }
    o
}
