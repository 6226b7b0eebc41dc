//! What every rule test sets up: a scenario with tracking numbers, call
//! events, claims and completions, row reads.

use std::time::Duration;

use callhook_core::{
    CallStatus, CustomFields, Observed, PhoneNumber, StoredSecret, Timezone, Visit, WebhookUrl,
};
use callhook_store::calls::{self, DeliveryRef, EndCall, IngestError, Ingested, StartCall};
use callhook_store::queue::{self, AttemptRecord, Claimed, Completion, Outcome};
use callhook_store::scenarios::{self, ScenarioSettings};
use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

/// The scenario's tracking number.
pub const NUMBER: &str = "78005552233";
pub const CALLER: &str = "79990009911";
/// The start grace ends pass to the store: long enough that nothing held
/// for it falls due during a test.
pub const GRACE: Duration = Duration::from_secs(60);
/// The lease claims take: nothing leased falls due again during a test.
pub const LEASE: Duration = Duration::from_secs(60);

pub fn phone(digits: &str) -> PhoneNumber {
    PhoneNumber::parse(digits, "number").expect("a test number parses")
}

/// A scenario's settings: both webhooks on, `numbers` its pool.
pub fn settings(numbers: &[&str]) -> ScenarioSettings {
    ScenarioSettings {
        name: "Rules".into(),
        during_call_url: Some(WebhookUrl::from_trusted(
            "https://receiver.test/during".into(),
        )),
        after_call_url: Some(WebhookUrl::from_trusted(
            "https://receiver.test/after".into(),
        )),
        custom_fields: CustomFields::from_trusted(Vec::new()),
        numbers: numbers.iter().map(|n| phone(n)).collect(),
        static_numbers: Vec::new(),
        timezone: Timezone::default(),
    }
}

/// Stores a scenario (its endpoints healthy) and returns its id.
pub async fn create_scenario(pool: &PgPool, settings: &ScenarioSettings) -> Uuid {
    let secret = StoredSecret::new("whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=".into());
    scenarios::create(pool, settings, &secret)
        .await
        .expect("scenario stored")
        .id
}

/// The usual scenario: both webhooks, [`NUMBER`] in its pool.
pub async fn scenario(pool: &PgPool) -> Uuid {
    create_scenario(pool, &settings(&[NUMBER])).await
}

/// A start from [`CALLER`] to [`NUMBER`], now, knowing nothing of a visit.
pub fn start(id: &str) -> StartCall {
    StartCall {
        id: id.into(),
        caller: phone(CALLER),
        callee: phone(NUMBER),
        date: None,
        scenario_id: None,
        visit: Visit::default(),
    }
}

/// An end as the telephony side sends it for a call it started.
pub fn end() -> EndCall {
    EndCall {
        status: CallStatus::NoAnswer,
        duration: 0,
        file_id: None,
        link: None,
        ended_at: None,
        caller: None,
        callee: None,
        date: None,
        scenario_id: None,
    }
}

/// An end naming who called which number: it may come before its start.
pub fn end_with_caller() -> EndCall {
    EndCall {
        caller: Some(phone(CALLER)),
        callee: Some(phone(NUMBER)),
        ..end()
    }
}

/// Stores one start (a batch of one, nothing leased).
pub async fn store_start(pool: &PgPool, input: StartCall) -> Result<Ingested, IngestError> {
    let mut batch = calls::start_batch(pool, &[input], None)
        .await
        .expect("the batch commits");
    batch.results.pop().expect("one result per start")
}

/// Stores an end with the [`GRACE`].
pub async fn store_end(pool: &PgPool, id: &str, input: &EndCall) -> Result<Ingested, IngestError> {
    calls::end(pool, id, input, GRACE).await.map(|(i, _)| i)
}

/// The deliveries an event created; panics on anything else.
pub fn created(result: Result<Ingested, IngestError>) -> Vec<DeliveryRef> {
    match result {
        Ok(Ingested::Created(d)) => d,
        other => panic!("expected Created, got {other:?}"),
    }
}

/// The one delivery an event created.
pub fn created_one(result: Result<Ingested, IngestError>) -> DeliveryRef {
    let mut d = created(result);
    assert_eq!(d.len(), 1, "one delivery created: {d:?}");
    d.pop().unwrap()
}

/// A delivery row, with its due time as seconds from now.
#[derive(Debug, sqlx::FromRow)]
pub struct Row {
    pub state: String,
    pub blocked_by: Option<Uuid>,
    pub lease_token: Option<Uuid>,
    pub last_error: Option<String>,
    pub payload: String,
    /// `next_attempt_at - now()`; `None` without a due time.
    pub due_in: Option<f64>,
}

impl Row {
    /// Claims would take it now.
    pub fn is_due(&self) -> bool {
        self.state == "pending" && self.due_in.is_some_and(|s| s <= 0.0)
    }
}

const ROW: &str = "select state, blocked_by, lease_token, last_error,
                          payload, extract(epoch from next_attempt_at - now())::float8 as due_in
                     from deliveries";

pub async fn delivery(pool: &PgPool, id: Uuid) -> Row {
    sqlx::query_as(&format!("{ROW} where id = $1"))
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("the delivery exists")
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Claims exactly one due delivery for [`LEASE`].
pub async fn claim_one(pool: &PgPool) -> Claimed {
    let mut got = queue::claim(pool, 1, LEASE).await.expect("claim");
    assert_eq!(got.len(), 1, "one delivery due: {got:?}");
    got.pop().unwrap()
}

/// Starts a call and claims its during-call delivery.
pub async fn started_and_claimed(pool: &PgPool, id: &str) -> Claimed {
    let d = created_one(store_start(pool, start(id)).await);
    let c = claim_one(pool).await;
    assert_eq!(c.id, d.id, "the new call's delivery is the one due");
    c
}

/// An HTTP attempt that got `status` back.
pub fn attempt(status: i32) -> AttemptRecord {
    AttemptRecord {
        url: "https://receiver.test/during".into(),
        started_at: Utc::now(),
        duration_ms: 5,
        response_status: Some(status),
        response_body: None,
        error: None,
    }
}

/// A claimed delivery delivered (a 200), its endpoint told so.
pub fn delivered(c: &Claimed) -> Completion {
    Completion {
        id: c.id,
        lease_token: c.lease_token,
        outcome: Outcome::Delivered,
        attempt: Some(attempt(200)),
        health: Some((c.scenario_id.unwrap(), c.kind, Observed::Success)),
    }
}
