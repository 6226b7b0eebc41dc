//! Times as the console shows and reads them: in the scenario's time zone,
//! with the offset (UTC where a row belongs to no scenario).

use std::collections::HashMap;

use callhook_core::{FieldError, Timezone};
use callhook_store::scenarios::{self, Scenario};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ConsoleError;

/// Every scenario's zone, read once for a page.
pub(super) struct Zones(HashMap<Uuid, (Timezone, String)>);

impl Zones {
    /// A scenario whose stored zone is damaged is shown in UTC (its own page
    /// says what is wrong).
    pub(super) fn of(scenarios: &[Scenario]) -> Self {
        Self(
            scenarios
                .iter()
                .map(|sc| (sc.id, (sc.tz().unwrap_or(Timezone::UTC), sc.name.clone())))
                .collect(),
        )
    }

    pub(super) async fn load(pool: &sqlx::PgPool) -> Result<Self, ConsoleError> {
        Ok(Self::of(&scenarios::list(pool).await?))
    }

    pub(super) fn zone(&self, scenario: Option<Uuid>) -> Timezone {
        scenario
            .and_then(|id| self.0.get(&id).map(|(tz, _)| *tz))
            .unwrap_or(Timezone::UTC)
    }

    /// The scenario's name (the zones are read with the scenarios, and a
    /// log line shows both).
    pub(super) fn name(&self, scenario: Option<Uuid>) -> &str {
        scenario
            .and_then(|id| self.0.get(&id).map(|(_, name)| name.as_str()))
            .unwrap_or("")
    }

    /// `2026-12-01 08:19:03 +03:00`.
    pub(super) fn show(&self, scenario: Option<Uuid>, at: DateTime<Utc>) -> String {
        self.zone(scenario).format_with_offset(at)
    }
}

/// A `datetime-local` input (`2026-12-01T08:19`, seconds optional) read as
/// a wall-clock time in `zone`; blank is `None`.
pub(super) fn read_input(
    zone: Timezone,
    input: &str,
    field: &str,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    let input = input.trim();
    if input.is_empty() {
        return Ok(None);
    }
    let with_seconds = if input.len() == "2026-12-01T08:19".len() {
        format!("{input}:00")
    } else {
        input.to_owned()
    };
    zone.parse_date(&with_seconds, field).map(Some)
}

/// `at` as a `datetime-local` input's value in `zone`.
pub(super) fn input_value(zone: Timezone, at: DateTime<Utc>) -> String {
    zone.format_with_offset(at)[..16].replacen(' ', "T", 1)
}
