//! Ingesting call events: a call row and its delivery rows, atomically.
//!
//! A start is one write statement (the call and its delivery in one
//! `INSERT … RETURNING` chain), so it commits on its own without a
//! transaction's extra round trips; a batch of starts shares one
//! transaction, so it costs one commit. An end locks its call row, so it runs
//! in a transaction.

use callhook_core::{
    build_payload, fingerprint, Call, CallEnd, CallStatus, DeliveryKind, FieldError, PhoneNumber,
    Visit,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use callhook_core::{CustomField, CustomFields, Timezone};
use sqlx::types::Json;

use crate::queue::{Claimed, Handoff};
use crate::StoreError;
use std::collections::HashMap;
use std::time::Duration;

/// Why an ingest event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A field's value is wrong (unknown number, unknown scenario, bad date…).
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The same call id was reported before with other data.
    #[error("{0}")]
    Conflict(String),
    /// An end event for a call never started, without `caller` and `callee`.
    #[error("{0}")]
    CallNotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for IngestError {
    fn from(e: sqlx::Error) -> Self {
        IngestError::Store(e.into())
    }
}

/// The start event, parsed (the date stays text until the scenario's zone is known).
#[derive(Debug, Clone, Serialize)]
pub struct StartCall {
    pub id: String,
    pub caller: PhoneNumber,
    pub callee: PhoneNumber,
    /// RFC 3339, or wall-clock time in the scenario's zone; `None` = now.
    pub date: Option<String>,
    pub scenario_id: Option<Uuid>,
    pub visit: Visit,
}

/// The end event, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct EndCall {
    pub status: CallStatus,
    pub duration: i64,
    pub file_id: Option<String>,
    pub link: Option<String>,
    /// `None` = now.
    pub ended_at: Option<String>,
    /// Only for a call never started: who called which number, and when.
    pub caller: Option<PhoneNumber>,
    pub callee: Option<PhoneNumber>,
    pub date: Option<String>,
    pub scenario_id: Option<Uuid>,
}

/// A delivery as the ingest API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRef {
    pub id: Uuid,
    pub kind: String,
    pub state: String,
}

/// What an ingest event did.
#[derive(Debug)]
pub enum Ingested {
    /// Stored now, with the deliveries it queued.
    Created(Vec<DeliveryRef>),
    /// The same event was stored before; these are its deliveries.
    Repeated(Vec<DeliveryRef>),
}

/// Stores a call's start and queues its during-call webhook, if the scenario has one.
pub async fn start(pool: &PgPool, input: &StartCall) -> Result<Ingested, IngestError> {
    let mut conn = pool.acquire().await?;
    Ok(
        start_on(&mut conn, input, None, &mut ScenarioCache::default())
            .await?
            .0,
    )
}

/// What [`start_batch`] stored.
#[derive(Debug)]
pub struct Batch {
    /// One per start, in order.
    pub results: Vec<Result<Ingested, IngestError>>,
    /// Deliveries queued for a dispatcher to claim (not handed off): when
    /// not zero, wake the dispatchers.
    pub queued: usize,
}

/// Stores many starts in one transaction (one commit). Each item has its own
/// result: one that is refused (a bad field, a conflicting repeat) writes
/// nothing and leaves the others be. A database error fails the whole batch.
/// With a `handoff`, new deliveries go straight to this process's
/// dispatcher while it has free workers.
pub async fn start_batch(
    pool: &PgPool,
    inputs: &[StartCall],
    handoff: Option<&Handoff>,
) -> Result<Batch, StoreError> {
    let token = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(inputs.len());
    let mut handed = Vec::new();
    let mut queued = 0;
    let mut scenarios = ScenarioCache::default();
    // Hand off no more than the dispatcher's free workers can start now.
    let budget = handoff.map_or(0, Handoff::budget);
    for input in inputs {
        let lease = handoff
            .filter(|_| handed.len() < budget)
            .map(|h| (token, h.lease()));
        match start_on(&mut tx, input, lease, &mut scenarios).await {
            Err(IngestError::Store(e)) => return Err(e),
            Ok((ingested, leased)) => {
                match leased {
                    Some(row) => handed.push(row),
                    None => {
                        if let Ingested::Created(d) = &ingested {
                            queued += d.len();
                        }
                    }
                }
                results.push(Ok(ingested));
            }
            Err(refused) => results.push(Err(refused)),
        }
    }
    tx.commit().await?;
    if let Some(h) = handoff {
        h.deliver(pool, handed).await;
    }
    Ok(Batch { results, queued })
}

/// A start on one connection: reads (scenario, attribution), then one write
/// statement. Nothing is written before every check has passed, so a refused
/// event leaves a surrounding transaction usable. With a `lease` (token,
/// length), the new delivery is inserted leased and returned as claimed.
async fn start_on(
    conn: &mut PgConnection,
    input: &StartCall,
    lease: Option<(Uuid, Duration)>,
    scenarios: &mut ScenarioCache,
) -> Result<(Ingested, Option<Claimed>), IngestError> {
    let scenario = scenarios.resolve(conn, input).await?;
    let tz = scenario.tz();
    let date = match &input.date {
        Some(d) => tz.parse_date(d, "date")?,
        None => Utc::now(),
    };
    let hash = fingerprint(input);
    let (visit, unattributed) =
        attributed_visit(conn, scenario.id, &input.callee, date, &input.visit).await?;
    let call = Call {
        id: input.id.clone(),
        caller: input.caller.clone(),
        callee: input.callee.clone(),
        date,
        visit,
        end: None,
    };
    let payload = scenario
        .during_call_url
        .is_some()
        .then(|| build_payload(&call, DeliveryKind::DuringCall, &scenario.fields(), tz));
    let inserted = insert_call(conn, &call, scenario.id, Some(&hash), payload, lease).await?;
    let Some(created) = inserted else {
        // Reported before (perhaps a moment ago by a concurrent request: the
        // insert waited for it to commit).
        let existing = sqlx::query_scalar!("select start_hash from calls where id = $1", input.id)
            .fetch_one(&mut *conn)
            .await?;
        return match existing {
            Some(h) if h == hash => Ok((
                Ingested::Repeated(
                    deliveries_of(&mut *conn, &input.id, DeliveryKind::DuringCall).await?,
                ),
                None,
            )),
            Some(_) => Err(IngestError::Conflict(format!(
                "call {} was already reported with other data; a call id must be unique",
                input.id
            ))),
            None => Err(IngestError::Conflict(format!(
                "call {} was already ended without a start; its start can no longer be recorded",
                input.id
            ))),
        };
    };
    if unattributed {
        count_unattributed(scenario.id);
    }
    let Some(new) = created else {
        return Ok((Ingested::Created(Vec::new()), None));
    };
    let claimed = lease.map(|(token, _)| Claimed {
        id: new.delivery.id,
        call_id: input.id.clone(),
        kind: new.delivery.kind.clone(),
        payload: new.payload,
        attempt_count: 0,
        created_at: new.created_at,
        url: scenario.during_call_url,
        signing_secret: Some(scenario.signing_secret),
        previous_signing_secret: scenario.previous_signing_secret,
        lease_token: token,
    });
    Ok((Ingested::Created(vec![new.delivery]), claimed))
}

/// The visit fields a call is stored and sent with. An event that names its
/// visit (`visit_id`) is taken as is; otherwise the call is attributed from
/// the number's reservation (or static fields) at the call's time, the
/// event's own fields winning. `true` when nothing covered the number then.
async fn attributed_visit(
    tx: &mut PgConnection,
    scenario_id: Uuid,
    callee: &PhoneNumber,
    date: DateTime<Utc>,
    given: &Visit,
) -> Result<(Visit, bool), StoreError> {
    if given.visit_id.is_some() {
        return Ok((given.clone(), false));
    }
    Ok(
        match crate::pool::attribute(tx, scenario_id, callee, date).await? {
            Some(found) => (given.clone().or(found), false),
            None => (given.clone(), true),
        },
    )
}

fn count_unattributed(scenario_id: Uuid) {
    metrics::counter!("callhook_calls_unattributed_total", "scenario_id" => scenario_id.to_string())
        .increment(1);
}

/// Records a call's end and queues its after-call webhook, if the scenario has one.
pub async fn end(pool: &PgPool, call_id: &str, input: &EndCall) -> Result<Ingested, IngestError> {
    let mut tx = pool.begin().await?;
    let hash = fingerprint(input);
    let mut row = lock_call(&mut tx, call_id).await?;
    // Set when this end event creates the call and nothing covered its number.
    let mut unattributed = None;
    if row.is_none() {
        let (Some(caller), Some(callee)) = (&input.caller, &input.callee) else {
            return Err(IngestError::CallNotFound(format!(
                "call {call_id} was never started; to end it anyway, send caller and callee with the end event"
            )));
        };
        let scenario = resolve_scenario(&mut tx, input.scenario_id, Some(callee)).await?;
        let tz = scenario.tz();
        let ended_at = match &input.ended_at {
            Some(d) => tz.parse_date(d, "ended_at")?,
            None => Utc::now(),
        };
        let started_at = match &input.date {
            Some(d) => tz.parse_date(d, "date")?,
            None => ended_at - chrono::Duration::seconds(input.duration),
        };
        let (visit, no_visit) =
            attributed_visit(&mut tx, scenario.id, callee, started_at, &Visit::default()).await?;
        unattributed = no_visit.then_some(scenario.id);
        let call = Call {
            id: call_id.to_owned(),
            caller: caller.clone(),
            callee: callee.clone(),
            date: started_at,
            visit,
            end: None,
        };
        // No start hash: the call was never started; no during-call webhook.
        insert_call(&mut tx, &call, scenario.id, None, None, None).await?;
        row = lock_call(&mut tx, call_id).await?;
    }
    let row = row.ok_or_else(|| IngestError::Store(StoreError::NotFound))?;

    if let Some(h) = &row.end_hash {
        return if *h == hash {
            Ok(Ingested::Repeated(
                deliveries_of(&mut *tx, call_id, DeliveryKind::AfterCall).await?,
            ))
        } else {
            Err(IngestError::Conflict(format!(
                "call {call_id} was already ended with other data"
            )))
        };
    }

    // A deleted scenario (null id) sends nothing.
    let scenario = match row.scenario_id {
        Some(id) => Some(resolve_scenario(&mut tx, Some(id), None).await?),
        None => None,
    };
    let tz = scenario
        .as_ref()
        .map(IngestScenario::tz)
        .unwrap_or_default();
    let ended_at = match &input.ended_at {
        Some(d) => tz.parse_date(d, "ended_at")?,
        None => Utc::now(),
    };
    let end = CallEnd {
        status: input.status,
        duration: input.duration,
        file_id: input.file_id.clone(),
        link: input.link.clone(),
        ended_at,
    };
    sqlx::query!(
        "update calls set status = $2, duration = $3, file_id = $4, link = $5, ended_at = $6,
                          end_hash = $7, updated_at = now()
          where id = $1",
        call_id,
        end.status.as_str(),
        i32::try_from(end.duration).unwrap_or(i32::MAX),
        end.file_id,
        end.link,
        end.ended_at,
        hash
    )
    .execute(&mut *tx)
    .await?;

    let mut created = Vec::new();
    if let Some(scenario) = scenario.filter(|s| s.after_call_url.is_some()) {
        let mut call = row.into_call();
        call.end = Some(end);
        let payload = build_payload(&call, DeliveryKind::AfterCall, &scenario.fields(), tz);
        created.push(
            insert_delivery(
                &mut tx,
                call_id,
                scenario.id,
                DeliveryKind::AfterCall,
                payload,
            )
            .await?,
        );
    }
    tx.commit().await?;
    if let Some(id) = unattributed {
        count_unattributed(id);
    }
    Ok(Ingested::Created(created))
}

/// The scenarios one transaction has resolved, by the (scenario id, callee)
/// the event named them with: a batch's calls to one number read their
/// scenario once.
#[derive(Default)]
struct ScenarioCache(HashMap<(Option<Uuid>, String), IngestScenario>);

impl ScenarioCache {
    async fn resolve(
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
struct IngestScenario {
    id: Uuid,
    during_call_url: Option<String>,
    after_call_url: Option<String>,
    custom_fields: Json<Vec<CustomField>>,
    timezone: String,
    signing_secret: String,
    /// Only while its overlap after a rotation runs.
    previous_signing_secret: Option<String>,
}

impl IngestScenario {
    fn tz(&self) -> Timezone {
        Timezone::parse(&self.timezone, "timezone").unwrap_or_default()
    }

    fn fields(&self) -> CustomFields {
        CustomFields::from_trusted(self.custom_fields.0.clone())
    }
}

/// The scenario named by id, or else the one owning `callee`: one query.
async fn resolve_scenario(
    conn: &mut PgConnection,
    scenario_id: Option<Uuid>,
    callee: Option<&PhoneNumber>,
) -> Result<IngestScenario, IngestError> {
    let found = sqlx::query_as!(
        IngestScenario,
        r#"select s.id, s.during_call_url, s.after_call_url,
                  s.custom_fields as "custom_fields: Json<Vec<CustomField>>", s.timezone,
                  s.signing_secret,
                  case when s.previous_secret_expires_at > now() then s.previous_signing_secret end
                    as "previous_signing_secret?"
             from scenarios s
            where s.id = coalesce($1, (select n.scenario_id from scenario_numbers n where n.number = $2))"#,
        scenario_id,
        callee.map(PhoneNumber::as_str),
    )
    .fetch_optional(&mut *conn)
    .await?;
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

/// A during-call delivery just inserted.
struct NewDelivery {
    delivery: DeliveryRef,
    payload: String,
    created_at: DateTime<Utc>,
}

/// Inserts a call (unless its id exists) and, with it, its during-call
/// delivery when `payload` is given (leased when `lease` is): one statement.
/// `None` when the call existed and nothing was written; otherwise the
/// delivery created, if any.
async fn insert_call(
    conn: &mut PgConnection,
    call: &Call,
    scenario_id: Uuid,
    start_hash: Option<&str>,
    payload: Option<Vec<u8>>,
    lease: Option<(Uuid, Duration)>,
) -> Result<Option<Option<NewDelivery>>, StoreError> {
    let v = &call.visit;
    let payload = payload.map(|p| String::from_utf8(p).expect("serde_json writes UTF-8"));
    let row = sqlx::query!(
        r#"with new_call as (
               insert into calls (id, scenario_id, caller, callee, started_at, visit_id, marker, order_id,
                                  google_client_id, landing_page, domain, city, country, ip, first_visit, referrer,
                                  utm_source, utm_medium, utm_campaign, utm_term, utm_content,
                                  roistat_param_1, roistat_param_2, roistat_param_3, roistat_param_4,
                                  roistat_param_5, metrika_client_id, source_level_1, source_level_2, start_hash)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
                       $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)
               on conflict (id) do nothing
               returning id
           ), new_delivery as (
               insert into deliveries (id, call_id, scenario_id, kind, payload, next_attempt_at, lease_token)
               select $31, new_call.id, $2, 'during_call', $32,
                      now() + make_interval(secs => coalesce($34::float8, 0)), $33
                 from new_call
                where $32::text is not null
               returning id, kind, state, created_at
           )
           select exists (select 1 from new_call) as "inserted!",
                  d.id as "delivery_id?", d.kind as "delivery_kind?", d.state as "delivery_state?",
                  d.created_at as "delivery_created_at?"
             from (select 1) as one
             left join new_delivery d on true"#,
        call.id,
        scenario_id,
        call.caller.as_str(),
        call.callee.as_str(),
        call.date,
        v.visit_id,
        v.marker,
        v.order_id,
        v.google_client_id,
        v.landing_page,
        v.domain,
        v.city,
        v.country,
        v.ip,
        v.first_visit,
        v.referrer,
        v.utm_source,
        v.utm_medium,
        v.utm_campaign,
        v.utm_term,
        v.utm_content,
        v.roistat_param_1,
        v.roistat_param_2,
        v.roistat_param_3,
        v.roistat_param_4,
        v.roistat_param_5,
        v.metrika_client_id,
        v.source_level_1,
        v.source_level_2,
        start_hash,
        Uuid::now_v7(),
        payload.as_deref(),
        lease.map(|(token, _)| token),
        lease.map(|(_, length)| length.as_secs_f64()),
    )
    .fetch_one(&mut *conn)
    .await?;
    if !row.inserted {
        return Ok(None);
    }
    let delivery = match (
        row.delivery_id,
        row.delivery_kind,
        row.delivery_state,
        row.delivery_created_at,
        payload,
    ) {
        (Some(id), Some(kind), Some(state), Some(created_at), Some(payload)) => Some(NewDelivery {
            delivery: DeliveryRef { id, kind, state },
            payload,
            created_at,
        }),
        _ => None,
    };
    Ok(Some(delivery))
}

async fn insert_delivery(
    tx: &mut PgConnection,
    call_id: &str,
    scenario_id: Uuid,
    kind: DeliveryKind,
    payload: Vec<u8>,
) -> Result<DeliveryRef, StoreError> {
    let payload = String::from_utf8(payload).expect("serde_json writes UTF-8");
    let row = sqlx::query_as!(
        DeliveryRef,
        "insert into deliveries (id, call_id, scenario_id, kind, payload, next_attempt_at)
         values ($1, $2, $3, $4, $5, now())
         returning id, kind, state",
        Uuid::now_v7(),
        call_id,
        scenario_id,
        kind.as_str(),
        payload
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(row)
}

async fn deliveries_of(
    e: impl PgExecutor<'_>,
    call_id: &str,
    kind: DeliveryKind,
) -> Result<Vec<DeliveryRef>, StoreError> {
    Ok(sqlx::query_as!(
        DeliveryRef,
        "select id, kind, state from deliveries where call_id = $1 and kind = $2 order by id",
        call_id,
        kind.as_str()
    )
    .fetch_all(e)
    .await?)
}

/// A call row with what the payload needs.
#[derive(Debug)]
pub struct CallRow {
    pub id: String,
    pub scenario_id: Option<Uuid>,
    pub caller: String,
    pub callee: String,
    pub started_at: DateTime<Utc>,
    pub visit_id: Option<String>,
    pub marker: Option<String>,
    pub order_id: Option<i64>,
    pub google_client_id: Option<String>,
    pub landing_page: Option<String>,
    pub domain: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub ip: Option<String>,
    pub first_visit: Option<String>,
    pub referrer: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub roistat_param_1: Option<String>,
    pub roistat_param_2: Option<String>,
    pub roistat_param_3: Option<String>,
    pub roistat_param_4: Option<String>,
    pub roistat_param_5: Option<String>,
    pub metrika_client_id: Option<String>,
    pub source_level_1: Option<String>,
    pub source_level_2: Option<String>,
    pub status: Option<String>,
    pub duration: Option<i32>,
    pub file_id: Option<String>,
    pub link: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CallRow {
    /// The call as the payload builder sees it (without its end).
    pub fn into_call(self) -> Call {
        Call {
            id: self.id,
            caller: PhoneNumber::from_trusted(self.caller),
            callee: PhoneNumber::from_trusted(self.callee),
            date: self.started_at,
            visit: Visit {
                visit_id: self.visit_id,
                marker: self.marker,
                google_client_id: self.google_client_id,
                landing_page: self.landing_page,
                domain: self.domain,
                city: self.city,
                country: self.country,
                ip: self.ip,
                first_visit: self.first_visit,
                referrer: self.referrer,
                utm_source: self.utm_source,
                utm_medium: self.utm_medium,
                utm_campaign: self.utm_campaign,
                utm_term: self.utm_term,
                utm_content: self.utm_content,
                roistat_param_1: self.roistat_param_1,
                roistat_param_2: self.roistat_param_2,
                roistat_param_3: self.roistat_param_3,
                roistat_param_4: self.roistat_param_4,
                roistat_param_5: self.roistat_param_5,
                metrika_client_id: self.metrika_client_id,
                source_level_1: self.source_level_1,
                source_level_2: self.source_level_2,
                order_id: self.order_id,
            },
            end: None,
        }
    }
}

/// Locks the call's row for this transaction, then reads it.
async fn lock_call(tx: &mut PgConnection, id: &str) -> Result<Option<CallRow>, StoreError> {
    let exists = sqlx::query_scalar!(
        "select 1 as \"one!\" from calls where id = $1 for update",
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    match exists {
        Some(_) => get(&mut *tx, id).await.map(Some),
        None => Ok(None),
    }
}

/// A call by id, for operators.
pub async fn get(e: impl PgExecutor<'_>, id: &str) -> Result<CallRow, StoreError> {
    sqlx::query_as!(
        CallRow,
        "select id, scenario_id, caller, callee, started_at, visit_id, marker, order_id,
                google_client_id, landing_page, domain, city, country, ip, first_visit, referrer,
                utm_source, utm_medium, utm_campaign, utm_term, utm_content,
                roistat_param_1, roistat_param_2, roistat_param_3, roistat_param_4, roistat_param_5,
                metrika_client_id, source_level_1, source_level_2, status, duration, file_id, link,
                ended_at, end_hash, created_at, updated_at
           from calls where id = $1",
        id
    )
    .fetch_optional(e)
    .await?
    .ok_or(StoreError::NotFound)
}
