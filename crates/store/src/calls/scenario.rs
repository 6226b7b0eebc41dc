//! The scenario a call event belongs to, as ingest needs it.

use std::collections::HashMap;

use callhook_core::{
    build_payload_within, Call, CancelReason, Condition, CustomField, CustomFields, DeliveryKind,
    EndpointState, FieldError, Filter, Header, PhoneNumber, StoredSecret, Timezone,
};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{IngestError, StartCall};
use crate::StoreError;

/// The scenarios one transaction has resolved, by the (scenario id, callee)
/// the event named them with (`None`: no such scenario): a batch's calls read
/// their scenarios in one query, and calls to one number share it.
#[derive(Default)]
pub(super) struct ScenarioCache(HashMap<(Option<Uuid>, String), Option<IngestScenario>>);

impl ScenarioCache {
    /// Resolves every scenario `inputs` name that is not known yet, in one
    /// query.
    pub(super) async fn load(
        &mut self,
        conn: &mut PgConnection,
        inputs: &[StartCall],
    ) -> Result<(), StoreError> {
        let mut keys: Vec<(Option<Uuid>, String)> = Vec::new();
        for input in inputs {
            let key = (input.scenario_id, input.callee.as_str().to_owned());
            if !self.0.contains_key(&key) && !keys.contains(&key) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let named: Vec<(Option<Uuid>, Option<&str>)> =
            keys.iter().map(|(id, n)| (*id, Some(n.as_str()))).collect();
        let found = fetch(conn, &named).await?;
        self.0.extend(keys.into_iter().zip(found));
        Ok(())
    }

    /// The scenario of `input` (read by [`ScenarioCache::load`], or now).
    pub(super) async fn resolve(
        &mut self,
        conn: &mut PgConnection,
        input: &StartCall,
    ) -> Result<IngestScenario, IngestError> {
        let key = (input.scenario_id, input.callee.as_str().to_owned());
        if let Some(known) = self.0.get(&key) {
            return known
                .clone()
                .ok_or_else(|| not_found(input.scenario_id, Some(&input.callee)));
        }
        let found = resolve_scenario(conn, input.scenario_id, Some(&input.callee)).await?;
        self.0.insert(key, Some(found.clone()));
        Ok(found)
    }
}

/// What ingest needs of a scenario.
#[derive(Clone)]
pub(crate) struct IngestScenario {
    pub id: Uuid,
    pub during_call_url: Option<String>,
    pub after_call_url: Option<String>,
    pub custom_fields: Json<Vec<CustomField>>,
    /// Each webhook's conditions (empty: every call).
    pub during_call_filter: Json<Vec<Condition>>,
    pub after_call_filter: Json<Vec<Condition>>,
    /// The during-call webhook's headers (for a hand-off), stored form.
    pub during_call_headers: Json<Vec<Header>>,
    /// Its own grace for a during-call webhook after the call's end (none:
    /// `CALLHOOK_DURING_CALL_GRACE`).
    pub during_call_grace_secs: Option<i32>,
    /// How long an after-call webhook whose call ended without a recording
    /// is held for one (none or 0: not held).
    pub recording_wait_secs: Option<i32>,
    pub timezone: String,
    pub signing_secret: StoredSecret,
    /// Only while its overlap after a rotation runs.
    pub previous_signing_secret: Option<StoredSecret>,
    /// Its endpoints' health: a paused or disabled one's new deliveries wait,
    /// parked.
    pub during_state: EndpointState,
    pub after_state: EndpointState,
    /// The during-call endpoint's health holds it (paused by failures, or
    /// disabled): its calls' after-call webhooks do not wait for their
    /// during-call ones. Never so when an operator paused it
    /// (`during_call_released` in SQL).
    pub during_releases_after_call: bool,
    /// The during-call endpoint's in-flight cap in force (`None`: the
    /// dispatcher's default): ingest hands over no more than the claims
    /// would take (`start::handoff_room`).
    pub during_cap: Option<i32>,
}

impl IngestScenario {
    /// The zone, checked when the scenario was resolved.
    pub(super) fn tz(&self) -> Timezone {
        Timezone::parse(&self.timezone, "timezone").unwrap_or_default()
    }

    pub(super) fn fields(&self) -> CustomFields {
        CustomFields::from_trusted(self.custom_fields.0.clone())
    }

    /// How long a during-call webhook not delivered when its call ends may
    /// still go: its own grace, or else `default`.
    pub(super) fn during_call_grace(&self, default: std::time::Duration) -> std::time::Duration {
        self.during_call_grace_secs.map_or(default, |s| {
            std::time::Duration::from_secs(u64::try_from(s).unwrap_or(0))
        })
    }

    /// How long its after-call webhooks wait for a recording the end did not
    /// carry, if at all.
    pub(super) fn recording_wait(&self) -> Option<std::time::Duration> {
        self.recording_wait_secs
            .and_then(|s| u64::try_from(s).ok())
            .filter(|&s| s > 0)
            .map(std::time::Duration::from_secs)
    }
}

/// The scenario named by id, or else the one owning `callee`: one query.
pub(super) async fn resolve_scenario(
    conn: &mut PgConnection,
    scenario_id: Option<Uuid>,
    callee: Option<&PhoneNumber>,
) -> Result<IngestScenario, IngestError> {
    let found = fetch(conn, &[(scenario_id, callee.map(PhoneNumber::as_str))])
        .await?
        .pop()
        .flatten();
    found.ok_or_else(|| not_found(scenario_id, callee))
}

/// The scenario each key names (by id, or else the one owning the number),
/// in the keys' order, `None` where there is none: one query.
async fn fetch(
    conn: &mut PgConnection,
    keys: &[(Option<Uuid>, Option<&str>)],
) -> Result<Vec<Option<IngestScenario>>, StoreError> {
    let ids: Vec<Option<Uuid>> = keys.iter().map(|k| k.0).collect();
    let numbers: Vec<Option<String>> = keys.iter().map(|k| k.1.map(str::to_owned)).collect();
    let rows = sqlx::query!(
        r#"select t.ord as "ord!", s.id, s.during_call_url, s.after_call_url,
                  s.custom_fields as "custom_fields: Json<Vec<CustomField>>", s.timezone,
                  s.during_call_filter as "during_call_filter: Json<Vec<Condition>>",
                  s.after_call_filter as "after_call_filter: Json<Vec<Condition>>",
                  s.during_call_headers as "during_call_headers: Json<Vec<Header>>",
                  s.during_call_grace_secs, s.recording_wait_secs,
                  s.signing_secret as "signing_secret: StoredSecret",
                  case when overlap_running(s.previous_secret_expires_at) then s.previous_signing_secret end
                    as "previous_signing_secret?: StoredSecret",
                  coalesce(d.state, 'healthy') as "during_state!: EndpointState",
                  coalesce(a.state, 'healthy') as "after_state!: EndpointState",
                  coalesce(during_call_released(d.state, d.next_probe_at), false)
                    as "during_releases_after_call!",
                  coalesce(d.cap, d.max_in_flight) as "during_cap?"
             from unnest($1::uuid[], $2::text[]) with ordinality as t(scenario_id, callee, ord)
             join scenarios s
               on s.id = coalesce(t.scenario_id,
                                  (select n.scenario_id from scenario_numbers n where n.number = t.callee))
             -- joined, not four subqueries: the plan cache then keeps one
             -- generic plan instead of planning each group's lookup again
             -- (a third of a millisecond of Postgres CPU a group)
             left join endpoints d on d.scenario_id = s.id and d.kind = 'during_call'
             left join endpoints a on a.scenario_id = s.id and a.kind = 'after_call'"#,
        &ids as &[Option<Uuid>],
        &numbers as &[Option<String>],
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut found: Vec<Option<IngestScenario>> = keys.iter().map(|_| None).collect();
    for r in rows {
        let scenario = IngestScenario {
            id: r.id,
            during_call_url: r.during_call_url,
            after_call_url: r.after_call_url,
            custom_fields: r.custom_fields,
            during_call_filter: r.during_call_filter,
            after_call_filter: r.after_call_filter,
            during_call_headers: r.during_call_headers,
            during_call_grace_secs: r.during_call_grace_secs,
            recording_wait_secs: r.recording_wait_secs,
            timezone: r.timezone,
            signing_secret: r.signing_secret,
            previous_signing_secret: r.previous_signing_secret,
            during_state: r.during_state,
            after_state: r.after_state,
            during_releases_after_call: r.during_releases_after_call,
            during_cap: r.during_cap,
        };
        check_zone(&scenario)?;
        let index = usize::try_from(r.ord - 1).expect("ordinality starts at 1");
        found[index] = Some(scenario);
    }
    Ok(found)
}

/// Zones are checked at save; one that no longer parses was damaged by
/// hand, and must not silently become Moscow.
fn check_zone(s: &IngestScenario) -> Result<(), StoreError> {
    Timezone::parse(&s.timezone, "timezone").map_err(|_| {
        StoreError::Corrupt(format!(
            "scenario {} has an invalid stored timezone {:?}: save the scenario with a valid IANA zone",
            s.id, s.timezone
        ))
    })?;
    Ok(())
}

/// No scenario by that id, or none owns that number.
fn not_found(scenario_id: Option<Uuid>, callee: Option<&PhoneNumber>) -> IngestError {
    match (scenario_id, callee) {
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
    }
}

impl IngestScenario {
    /// The conditions of the webhook of `kind` (empty: every call).
    fn filter(&self, kind: DeliveryKind) -> Filter {
        Filter::from_trusted(match kind {
            DeliveryKind::AfterCall => self.after_call_filter.0.clone(),
            _ => self.during_call_filter.0.clone(),
        })
    }

    /// Whether the webhook of `kind` needs `first_call` (the store looks
    /// it up only then: [`first_call`]).
    pub(super) fn needs_first_call(&self, kind: DeliveryKind) -> bool {
        self.filter(kind).needs_first_call()
    }

    /// The body of `call`'s webhook of this kind and, when its delivery is
    /// to be stored cancelled, why: its conditions do not hold (`filtered`,
    /// with the condition that failed), or it would pass `max` bytes (an
    /// empty body).
    pub(super) fn delivery(
        &self,
        call: &Call,
        kind: DeliveryKind,
        max: usize,
        first_call: bool,
    ) -> (String, Option<CancelReason>, Option<Condition>) {
        let (payload, too_large) = self.payload(call, kind, max);
        let failed = self
            .filter(kind)
            .first_failing(call, self.tz(), first_call)
            .cloned();
        let cancelled = failed
            .as_ref()
            .map(|_| CancelReason::Filtered)
            .or(too_large);
        (payload, cancelled, failed)
    }

    /// The exact body of `call`'s webhook of this kind, or, when it would
    /// pass `max` bytes, an empty one and the reason its delivery is
    /// stored cancelled.
    fn payload(
        &self,
        call: &Call,
        kind: DeliveryKind,
        max: usize,
    ) -> (String, Option<CancelReason>) {
        match build_payload_within(call, kind, &self.fields(), self.tz(), max) {
            Some(bytes) => (
                String::from_utf8(bytes).expect("serde_json writes UTF-8"),
                None,
            ),
            None => (String::new(), Some(CancelReason::PayloadTooLarge)),
        }
    }
}

/// Whether no earlier call from `caller` reached scenario `scenario` (one
/// probe of `calls_scenario_caller_idx`).
pub(super) async fn first_call(
    conn: &mut PgConnection,
    scenario: Uuid,
    caller: &str,
    call_id: &str,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<bool, StoreError> {
    Ok(!sqlx::query_scalar!(
        r#"select exists (select 1 from calls
                           where scenario_id = $1 and caller = $2 and started_at <= $3 and id <> $4)
             as "earlier!""#,
        scenario,
        caller,
        started_at,
        call_id,
    )
    .fetch_one(&mut *conn)
    .await?)
}
