//! Ingesting call events: a call row and its delivery rows, atomically.
//!
//! Starts are stored in batches (the batch endpoint's, or the group commit's
//! of single requests; a lone start is a batch of one): one transaction, one
//! commit, and a handful of statements whatever the batch's size (each
//! distinct number's scenario, one attribution query, one insert of every
//! call with its delivery). An end locks its call row, so it runs in a
//! transaction of its own.

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

use crate::queue::{Claimed, Handoff, Notifier};
use crate::StoreError;
use chrono::SubsecRound as _;
use std::collections::HashMap;

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

/// A start that passed every check, on its way into the bulk insert.
struct Checked {
    index: usize,
    scenario: IngestScenario,
    hash: String,
    /// Nothing covered the number at the call's time.
    unattributed: bool,
    call: Call,
}

/// Stores many starts in one transaction (one commit) and a handful of
/// statements, whatever their number: the scenarios (once per number), the
/// attribution of every call (one query), then every call and delivery (one
/// insert). Each item has its own result: one that is refused (a bad field,
/// a conflicting repeat) writes nothing and leaves the others be. A database
/// error fails the whole batch. Once committed, the new deliveries are on
/// their way: with a `handoff`, straight to this process's dispatcher while
/// it has free workers; the rest announced to every dispatcher through the
/// `notifier`.
pub async fn start_batch(
    pool: &PgPool,
    inputs: &[StartCall],
    handoff: Option<&Handoff>,
    notifier: &Notifier,
) -> Result<Vec<Result<Ingested, IngestError>>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut results: Vec<Option<Result<Ingested, IngestError>>> =
        inputs.iter().map(|_| None).collect();

    // Checks that need the database, before anything is written.
    let mut scenarios = ScenarioCache::default();
    let mut checked = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        let scenario = match scenarios.resolve(&mut tx, input).await {
            Ok(s) => s,
            Err(IngestError::Store(e)) => return Err(e),
            Err(refused) => {
                results[index] = Some(Err(refused));
                continue;
            }
        };
        let date = match &input.date {
            Some(d) => scenario.tz().parse_date(d, "date"),
            None => Ok(Utc::now()),
        };
        let date = match date {
            // Postgres keeps microseconds: the payload and the row agree.
            Ok(d) => d.trunc_subsecs(6),
            Err(e) => {
                results[index] = Some(Err(e.into()));
                continue;
            }
        };
        checked.push(Checked {
            index,
            hash: fingerprint(input),
            unattributed: false,
            call: Call {
                id: input.id.clone(),
                caller: input.caller.clone(),
                callee: input.callee.clone(),
                date,
                visit: input.visit.clone(),
                end: None,
            },
            scenario,
        });
    }
    let mut visits: Vec<_> = checked
        .iter_mut()
        .map(|c| {
            (
                c.scenario.id,
                &c.call.callee,
                c.call.date,
                &mut c.call.visit,
            )
        })
        .collect();
    let unattributed = attribute_visits(&mut tx, &mut visits).await?;
    drop(visits);
    for (c, unattributed) in checked.iter_mut().zip(unattributed) {
        c.unattributed = unattributed;
    }

    // One row per call id: a repeat within the batch is answered below as a
    // repeat of the first.
    let token = Uuid::now_v7();
    let lease = handoff.map(|h| (h.budget(), h.lease().as_secs_f64()));
    let mut leased = 0;
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::with_capacity(checked.len());
    for c in &checked {
        if !seen.insert(c.call.id.as_str()) {
            continue;
        }
        let payload = c.scenario.during_call_url.is_some().then(|| {
            let bytes = build_payload(
                &c.call,
                DeliveryKind::DuringCall,
                &c.scenario.fields(),
                c.scenario.tz(),
            );
            String::from_utf8(bytes).expect("serde_json writes UTF-8")
        });
        let lease = match lease {
            Some((budget, secs)) if payload.is_some() && leased < budget => {
                leased += 1;
                Some((token, secs))
            }
            _ => None,
        };
        rows.push(NewCall {
            call: &c.call,
            scenario_id: c.scenario.id,
            start_hash: Some(&c.hash),
            payload,
            lease,
        });
    }
    let mut inserted = insert_calls(&mut tx, rows).await?;

    let mut handed = Vec::new();
    let mut queued = 0;
    for c in checked {
        let result = match inserted.remove(&c.call.id) {
            Some(delivery) => {
                if c.unattributed {
                    count_unattributed(c.scenario.id);
                }
                match delivery {
                    None => Ok(Ingested::Created(Vec::new())),
                    Some(new) => {
                        match new.lease_token {
                            Some(token) => handed.push(Claimed {
                                id: new.delivery.id,
                                call_id: c.call.id.clone(),
                                kind: new.delivery.kind.clone(),
                                payload: new.payload,
                                attempt_count: 0,
                                created_at: new.created_at,
                                url: c.scenario.during_call_url,
                                signing_secret: Some(c.scenario.signing_secret),
                                previous_signing_secret: c.scenario.previous_signing_secret,
                                lease_token: token,
                            }),
                            None => queued += 1,
                        }
                        Ok(Ingested::Created(vec![new.delivery]))
                    }
                }
            }
            // Reported before (perhaps a moment ago by a concurrent request,
            // or earlier in this batch).
            None => match reported_before(&mut tx, &c.call.id, &c.hash).await {
                Err(IngestError::Store(e)) => return Err(e),
                other => other,
            },
        };
        results[c.index] = Some(result);
    }
    tx.commit().await?;
    if queued > 0 {
        notifier.wake();
    }
    if let Some(h) = handoff {
        h.deliver(pool, handed).await;
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every start answered"))
        .collect())
}

/// The answer to a start whose call id is stored already: the same event
/// again, or a conflict.
async fn reported_before(
    conn: &mut PgConnection,
    id: &str,
    hash: &str,
) -> Result<Ingested, IngestError> {
    let existing = sqlx::query_scalar!("select start_hash from calls where id = $1", id)
        .fetch_one(&mut *conn)
        .await?;
    match existing {
        Some(h) if h == hash => Ok(Ingested::Repeated(
            deliveries_of(&mut *conn, id, DeliveryKind::DuringCall).await?,
        )),
        Some(_) => Err(IngestError::Conflict(format!(
            "call {id} was already reported with other data; a call id must be unique"
        ))),
        None => Err(IngestError::Conflict(format!(
            "call {id} was already ended without a start; its start can no longer be recorded"
        ))),
    }
}

/// The visit fields calls are stored and sent with, each call given as
/// (scenario, number, time, its event's visit fields), in one query. An
/// event that names its visit (`visit_id`) is taken as is; otherwise the call
/// is attributed from the number's reservation (or static fields) at the
/// call's time, the event's own fields winning. Returns, per call, `true`
/// when nothing covered the number then.
async fn attribute_visits(
    conn: &mut PgConnection,
    calls: &mut [(Uuid, &PhoneNumber, DateTime<Utc>, &mut Visit)],
) -> Result<Vec<bool>, StoreError> {
    let mut unattributed = vec![false; calls.len()];
    let asked: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i].3.visit_id.is_none())
        .collect();
    if asked.is_empty() {
        return Ok(unattributed);
    }
    let lookups: Vec<(Uuid, &PhoneNumber, DateTime<Utc>)> = asked
        .iter()
        .map(|&i| (calls[i].0, calls[i].1, calls[i].2))
        .collect();
    let found = crate::pool::attribute_many(conn, &lookups).await?;
    for (i, found) in asked.into_iter().zip(found) {
        match found {
            Some(visit) => {
                let given = std::mem::take(&mut *calls[i].3);
                *calls[i].3 = given.or(visit);
            }
            None => unattributed[i] = true,
        }
    }
    Ok(unattributed)
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
        let mut visit = Visit::default();
        let no_visit = attribute_visits(
            &mut tx,
            &mut [(scenario.id, callee, started_at, &mut visit)],
        )
        .await?;
        unattributed = no_visit[0].then_some(scenario.id);
        let call = Call {
            id: call_id.to_owned(),
            caller: caller.clone(),
            callee: callee.clone(),
            date: started_at,
            visit,
            end: None,
        };
        // No start hash: the call was never started; no during-call webhook.
        insert_calls(
            &mut tx,
            vec![NewCall {
                call: &call,
                scenario_id: scenario.id,
                start_hash: None,
                payload: None,
                lease: None,
            }],
        )
        .await?;
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

/// A call to insert, with its during-call delivery when `payload` is given.
struct NewCall<'a> {
    call: &'a Call,
    scenario_id: Uuid,
    start_hash: Option<&'a str>,
    payload: Option<String>,
    /// Inserted leased (token, seconds) for this process's dispatcher.
    lease: Option<(Uuid, f64)>,
}

/// A during-call delivery just inserted.
struct NewDelivery {
    delivery: DeliveryRef,
    payload: String,
    created_at: DateTime<Utc>,
    lease_token: Option<Uuid>,
}

/// One call as `jsonb_to_recordset` reads it (the column names).
#[derive(Serialize)]
struct CallRecord<'a> {
    ord: i32,
    id: &'a str,
    scenario_id: Uuid,
    caller: &'a str,
    callee: &'a str,
    started_at: DateTime<Utc>,
    start_hash: Option<&'a str>,
    #[serde(flatten)]
    visit: &'a Visit,
}

/// Inserts calls (each unless its id exists; ids must be distinct) with
/// their during-call deliveries: one statement, in the given order. Returns
/// the calls inserted, each with its delivery if it has one; a call missing
/// from the map existed and nothing was written for it.
async fn insert_calls(
    conn: &mut PgConnection,
    rows: Vec<NewCall<'_>>,
) -> Result<HashMap<String, Option<NewDelivery>>, StoreError> {
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let n = rows.len();
    let mut records = Vec::with_capacity(n);
    let mut ords = Vec::with_capacity(n);
    let mut delivery_ids = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut lease_secs = Vec::with_capacity(n);
    for (ord, r) in rows.iter().enumerate() {
        let ord = i32::try_from(ord).expect("a batch holds at most 1000 calls");
        records.push(CallRecord {
            ord,
            id: &r.call.id,
            scenario_id: r.scenario_id,
            caller: r.call.caller.as_str(),
            callee: r.call.callee.as_str(),
            started_at: r.call.date,
            start_hash: r.start_hash,
            visit: &r.call.visit,
        });
        ords.push(ord);
        delivery_ids.push(Uuid::now_v7());
        payloads.push(r.payload.as_deref());
        tokens.push(r.lease.map(|(t, _)| t));
        lease_secs.push(r.lease.map(|(_, s)| s));
    }
    let records = Json(records);
    let created = sqlx::query!(
        r#"with input as (
               select t.*, p.delivery_id, p.payload, p.lease_token, p.lease_secs
                 from jsonb_to_recordset($1::jsonb) as t(
                        ord int, id text, scenario_id uuid, caller text, callee text,
                        started_at timestamptz, start_hash text, visit_id text, marker text,
                        order_id bigint, google_client_id text, landing_page text, domain text,
                        city text, country text, ip text, first_visit text, referrer text,
                        utm_source text, utm_medium text, utm_campaign text, utm_term text,
                        utm_content text, roistat_param_1 text, roistat_param_2 text,
                        roistat_param_3 text, roistat_param_4 text, roistat_param_5 text,
                        metrika_client_id text, source_level_1 text, source_level_2 text)
                 join unnest($2::int4[], $3::uuid[], $4::text[], $5::uuid[], $6::float8[])
                      as p(ord, delivery_id, payload, lease_token, lease_secs) on p.ord = t.ord
           ), new_call as (
               insert into calls (id, scenario_id, caller, callee, started_at, visit_id, marker, order_id,
                                  google_client_id, landing_page, domain, city, country, ip, first_visit, referrer,
                                  utm_source, utm_medium, utm_campaign, utm_term, utm_content,
                                  roistat_param_1, roistat_param_2, roistat_param_3, roistat_param_4,
                                  roistat_param_5, metrika_client_id, source_level_1, source_level_2, start_hash)
               select id, scenario_id, caller, callee, started_at, visit_id, marker, order_id,
                      google_client_id, landing_page, domain, city, country, ip, first_visit, referrer,
                      utm_source, utm_medium, utm_campaign, utm_term, utm_content,
                      roistat_param_1, roistat_param_2, roistat_param_3, roistat_param_4,
                      roistat_param_5, metrika_client_id, source_level_1, source_level_2, start_hash
                 from input
                order by ord
               on conflict (id) do nothing
               returning id
           ), new_delivery as (
               insert into deliveries (id, call_id, scenario_id, kind, payload, next_attempt_at, lease_token)
               select i.delivery_id, i.id, i.scenario_id, 'during_call', i.payload,
                      now() + make_interval(secs => coalesce(i.lease_secs, 0)), i.lease_token
                 from input i
                 join new_call c on c.id = i.id
                where i.payload is not null
                order by i.ord
               returning id, call_id, kind, state, created_at, lease_token
           )
           select c.id as "call_id!", d.id as "delivery_id?", d.kind as "kind?", d.state as "state?",
                  d.created_at as "created_at?", d.lease_token
             from new_call c
             left join new_delivery d on d.call_id = c.id"#,
        records as _,
        &ords,
        &delivery_ids,
        &payloads as _,
        &tokens as _,
        &lease_secs as _,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut payload_of: HashMap<&str, Option<String>> = rows
        .into_iter()
        .map(|r| (r.call.id.as_str(), r.payload))
        .collect();
    Ok(created
        .into_iter()
        .map(|row| {
            let payload = payload_of.remove(row.call_id.as_str()).flatten();
            let delivery = match (
                row.delivery_id,
                row.kind,
                row.state,
                row.created_at,
                payload,
            ) {
                (Some(id), Some(kind), Some(state), Some(created_at), Some(payload)) => {
                    Some(NewDelivery {
                        delivery: DeliveryRef { id, kind, state },
                        payload,
                        created_at,
                        lease_token: row.lease_token,
                    })
                }
                _ => None,
            };
            (row.call_id, delivery)
        })
        .collect())
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
