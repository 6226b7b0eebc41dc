//! The scenario a call event belongs to, as ingest needs it.

use std::collections::HashMap;

use callhook_core::{
    build_payload, Call, CustomField, CustomFields, DeliveryKind, EndpointState, FieldError,
    PhoneNumber, StoredSecret, Timezone,
};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{IngestError, StartCall};
use crate::StoreError;

/// The scenarios one transaction has resolved, by the (scenario id, callee)
/// the event named them with: a batch's calls to one number read their
/// scenario once.
#[derive(Default)]
pub(super) struct ScenarioCache(HashMap<(Option<Uuid>, String), IngestScenario>);

impl ScenarioCache {
    pub(super) async fn resolve(
        &mut self,
        conn: &mut PgConnection,
        input: &StartCall,
    ) -> Result<IngestScenario, IngestError> {
        let key = (input.scenario_id, input.callee.as_str().to_owned());
        if let Some(found) = self.0.get(&key) {
            return Ok(found.clone());
        }
        let found = resolve_scenario(conn, input.scenario_id, Some(&input.callee)).await?;
        self.0.insert(key, found.clone());
        Ok(found)
    }
}

/// What ingest needs of a scenario.
#[derive(Clone)]
pub(super) struct IngestScenario {
    pub id: Uuid,
    pub during_call_url: Option<String>,
    pub after_call_url: Option<String>,
    pub custom_fields: Json<Vec<CustomField>>,
    pub timezone: String,
    pub signing_secret: StoredSecret,
    /// Only while its overlap after a rotation runs.
    pub previous_signing_secret: Option<StoredSecret>,
    /// Its endpoints' health: a paused or disabled one's new deliveries wait,
    /// parked.
    pub during_state: EndpointState,
    pub after_state: EndpointState,
}

impl IngestScenario {
    /// The zone, checked when the scenario was resolved.
    pub fn tz(&self) -> Timezone {
        Timezone::parse(&self.timezone, "timezone").unwrap_or_default()
    }

    pub fn fields(&self) -> CustomFields {
        CustomFields::from_trusted(self.custom_fields.0.clone())
    }
}

/// The scenario named by id, or else the one owning `callee`: one query.
pub(super) async fn resolve_scenario(
    conn: &mut PgConnection,
    scenario_id: Option<Uuid>,
    callee: Option<&PhoneNumber>,
) -> Result<IngestScenario, IngestError> {
    let found = sqlx::query_as!(
        IngestScenario,
        r#"select s.id, s.during_call_url, s.after_call_url,
                  s.custom_fields as "custom_fields: Json<Vec<CustomField>>", s.timezone,
                  s.signing_secret as "signing_secret: StoredSecret",
                  case when s.previous_secret_expires_at > now() then s.previous_signing_secret end
                    as "previous_signing_secret?: StoredSecret",
                  coalesce((select e.state from endpoints e where e.scenario_id = s.id and e.kind = 'during_call'),
                           'healthy') as "during_state!: EndpointState",
                  coalesce((select e.state from endpoints e where e.scenario_id = s.id and e.kind = 'after_call'),
                           'healthy') as "after_state!: EndpointState"
             from scenarios s
            where s.id = coalesce($1, (select n.scenario_id from scenario_numbers n where n.number = $2))"#,
        scenario_id,
        callee.map(PhoneNumber::as_str),
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(s) = &found {
        // Zones are checked at save; one that no longer parses was damaged
        // by hand, and must not silently become Moscow.
        Timezone::parse(&s.timezone, "timezone").map_err(|_| {
            StoreError::Corrupt(format!(
                "scenario {} has an invalid stored timezone {:?}: save the scenario with a valid IANA zone",
                s.id, s.timezone
            ))
        })?;
    }
    found.ok_or_else(|| match (scenario_id, callee) {
        (Some(id), _) => FieldError::new(
            "scenario_id",
            "unknown_scenario",
            format!("scenario {id} does not exist"),
        )
        .into(),
        (None, Some(callee)) => FieldError::new(
            "callee",
            "unknown_number",
            format!("number {callee} belongs to no scenario; add it to a scenario's numbers"),
        )
        .into(),
        (None, None) => IngestError::Store(StoreError::NotFound),
    })
}

impl IngestScenario {
    /// The exact body of `call`'s webhook of this kind.
    pub fn payload(&self, call: &Call, kind: DeliveryKind) -> String {
        let bytes = build_payload(call, kind, &self.fields(), self.tz());
        String::from_utf8(bytes).expect("serde_json writes UTF-8")
    }
}
