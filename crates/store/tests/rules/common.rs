//! What every rule test sets up: a scenario with tracking numbers, call
//! events, claims and completions, row reads, and the barriers that hold a
//! transaction open until another is seen waiting on it (read from
//! `pg_stat_activity`, never a timer).

use std::time::{Duration, Instant};

use callhook_core::{
    CallStatus, DeliveryKind, HealthPolicy, Observed, PhoneNumber, StoredSecret, Visit, WebhookUrl,
};
use callhook_store::calls::{self, DeliveryRef, EndCall, IngestError, Ingested, StartCall};
use callhook_store::health::HealthSettings;
use callhook_store::queue::{self, AttemptRecord, Claimed, Completion, Outcome};
use callhook_store::scenarios::{self, ScenarioSettings};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::task::AbortHandle;
use uuid::Uuid;

/// The scenario's tracking number (and the second one of a pool of two).
pub(crate) const NUMBER: &str = "78005552233";
pub(crate) const NUMBER_2: &str = "78005552234";
pub(crate) const CALLER: &str = "79990009911";
/// The start grace ends pass to the store: long enough that nothing held
/// for it falls due during a test.
pub(crate) const GRACE: Duration = Duration::from_secs(60);
/// The graces an end is stored with: [`GRACE`] for a start, an hour for a
/// during-call webhook (no rule test waits for one to expire).
pub(crate) const GRACES: calls::Graces = calls::Graces {
    start: GRACE,
    during_call: Duration::from_secs(3600),
};
/// The default payload limit, as a process has it.
pub(crate) const MAX: usize = callhook_core::DEFAULT_MAX_PAYLOAD_BYTES;
/// What a start is told, as a process has it (the during-call grace as
/// [`GRACES`]).
pub(crate) const RULES: calls::StartRules = calls::StartRules {
    max_payload: MAX,
    during_call_grace: GRACES.during_call,
};
/// The lease claims take: nothing leased falls due again during a test.
pub(crate) const LEASE: Duration = Duration::from_secs(60);

/// A claim of up to `limit` deliveries for `lease`, with an endpoint cap
/// high enough never to be what limits it (the cap has tests of its own).
pub(crate) async fn claim(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, callhook_store::StoreError> {
    queue::claim(
        pool,
        queue::ClaimLimits {
            limit,
            lease,
            endpoint_cap: 1000,
        },
    )
    .await
}

pub(crate) fn phone(digits: &str) -> PhoneNumber {
    PhoneNumber::parse(digits, "number").expect("a test number parses")
}

/// A scenario's settings: both webhooks on, `numbers` its pool.
pub(crate) fn settings(numbers: &[&str]) -> ScenarioSettings {
    ScenarioSettings {
        during_call_url: Some(WebhookUrl::from_trusted(
            "https://receiver.test/during".into(),
        )),
        after_call_url: Some(WebhookUrl::from_trusted(
            "https://receiver.test/after".into(),
        )),
        ..ScenarioSettings::named("Rules", numbers.iter().map(|n| phone(n)).collect())
    }
}

/// Stores a scenario (its endpoints healthy) and returns its id.
pub(crate) async fn create_scenario(pool: &PgPool, settings: &ScenarioSettings) -> Uuid {
    let secret = StoredSecret::new("whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=".into());
    scenarios::create(pool, uuid::Uuid::now_v7(), settings, &secret)
        .await
        .expect("scenario stored")
        .id
}

/// The usual scenario: both webhooks, [`NUMBER`] in its pool.
pub(crate) async fn scenario(pool: &PgPool) -> Uuid {
    create_scenario(pool, &settings(&[NUMBER])).await
}

/// A start from [`CALLER`] to [`NUMBER`], now, knowing nothing of a visit.
pub(crate) fn start(id: &str) -> StartCall {
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
pub(crate) fn end() -> EndCall {
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
pub(crate) fn end_with_caller() -> EndCall {
    EndCall {
        caller: Some(phone(CALLER)),
        callee: Some(phone(NUMBER)),
        ..end()
    }
}

/// Stores one start (a batch of one, nothing leased).
pub(crate) async fn store_start(pool: &PgPool, input: StartCall) -> Result<Ingested, IngestError> {
    let mut batch = calls::start_batch(pool, &[input], None, RULES)
        .await
        .expect("the batch commits");
    batch.results.pop().expect("one result per start")
}

/// Stores an end with the [`GRACE`].
pub(crate) async fn store_end(
    pool: &PgPool,
    id: &str,
    input: &EndCall,
) -> Result<Ingested, IngestError> {
    calls::end(pool, id, input, GRACES, MAX)
        .await
        .map(|(i, _)| i)
}

/// The deliveries an event created; panics on anything else.
pub(crate) fn created(result: Result<Ingested, IngestError>) -> Vec<DeliveryRef> {
    match result {
        Ok(Ingested::Created(d)) => d,
        other => panic!("expected Created, got {other:?}"),
    }
}

/// The one delivery an event created.
pub(crate) fn created_one(result: Result<Ingested, IngestError>) -> DeliveryRef {
    let mut d = created(result);
    assert_eq!(d.len(), 1, "one delivery created: {d:?}");
    d.pop().unwrap()
}

/// A delivery row, with its due time as seconds from now.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Row {
    pub state: String,
    pub blocked_by: Option<Uuid>,
    pub lease_token: Option<Uuid>,
    pub parked: bool,
    pub attempt_count: i32,
    pub last_error: Option<String>,
    pub payload: String,
    /// `next_attempt_at - now()`; `None` without a due time.
    pub due_in: Option<f64>,
}

impl Row {
    /// Claims would take it now.
    pub(crate) fn is_due(&self) -> bool {
        self.state == "pending" && self.due_in.is_some_and(|s| s <= 0.0)
    }
}

const ROW: &str = "select state, blocked_by, lease_token, parked, attempt_count, last_error,
                          payload, extract(epoch from next_attempt_at - now())::float8 as due_in
                     from deliveries";

pub(crate) async fn delivery(pool: &PgPool, id: Uuid) -> Row {
    sqlx::query_as(&format!("{ROW} where id = $1"))
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("the delivery exists")
}

pub(crate) async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Claims exactly one due delivery for [`LEASE`].
pub(crate) async fn claim_one(pool: &PgPool) -> Claimed {
    let mut got = claim(pool, 1, LEASE).await.expect("claim");
    assert_eq!(got.len(), 1, "one delivery due: {got:?}");
    got.pop().unwrap()
}

/// Starts a call and claims its during-call delivery.
pub(crate) async fn started_and_claimed(pool: &PgPool, id: &str) -> Claimed {
    let d = created_one(store_start(pool, start(id)).await);
    let c = claim_one(pool).await;
    assert_eq!(c.id, d.id, "the new call's delivery is the one due");
    c
}

/// An HTTP attempt that got `status` back.
pub(crate) fn attempt(status: i32) -> AttemptRecord {
    AttemptRecord {
        url: "https://receiver.test/during".into(),
        started_at: Utc::now(),
        duration_ms: 5,
        response_status: Some(status),
        response_body: None,
        error: None,
    }
}

pub(crate) fn failure(gone: bool) -> Observed {
    Observed::Failure {
        error: if gone { "http_410" } else { "http_500" }.into(),
        gone,
    }
}

/// A claimed delivery delivered (a 200), its endpoint told so.
pub(crate) fn delivered(c: &Claimed) -> Completion {
    Completion {
        id: c.id,
        lease_token: c.lease_token,
        outcome: Outcome::Delivered,
        attempt: Some(attempt(200)),
        health: Some((c.scenario_id.unwrap(), c.kind, Observed::Success)),
    }
}

/// A claimed delivery that failed (a 500, or a 410 when `gone`), to be
/// retried in a minute, its endpoint told so.
pub(crate) fn failed(c: &Claimed, gone: bool) -> Completion {
    Completion {
        id: c.id,
        lease_token: c.lease_token,
        outcome: Outcome::Retry(Duration::from_secs(60)),
        attempt: Some(attempt(if gone { 410 } else { 500 })),
        health: Some((c.scenario_id.unwrap(), c.kind, failure(gone))),
    }
}

/// Health as applied with `policy`, operator events on.
pub(crate) fn health(policy: HealthPolicy) -> HealthSettings {
    HealthSettings {
        policy,
        operator_events: true,
        drain_per_second: 1000,
        endpoint_cap: 16,
    }
}

/// An endpoint row: (state, consecutive_failures, next_probe_at).
pub(crate) async fn endpoint(
    pool: &PgPool,
    scenario: Uuid,
    kind: DeliveryKind,
) -> (String, i32, Option<DateTime<Utc>>) {
    sqlx::query_as(
        "select state, consecutive_failures, next_probe_at from endpoints
          where scenario_id = $1 and kind = $2",
    )
    .bind(scenario)
    .bind(kind.as_str())
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Puts the scenario's during-call endpoint where its health leaves it
/// after five failures and no success for two hours.
pub(crate) async fn failing_for_two_hours(pool: &PgPool, scenario: Uuid) {
    sqlx::query(
        "update endpoints
            set state = 'failing', consecutive_failures = 5, last_error = 'http_500',
                failing_since = now() - interval '2 hours', since = now() - interval '2 hours'
          where scenario_id = $1 and kind = 'during_call'",
    )
    .bind(scenario)
    .execute(pool)
    .await
    .unwrap();
}

/// An open transaction holding the scenario's row lock (`FOR UPDATE`).
/// Any insert that references the scenario (a call, a delivery) stops at
/// its foreign-key check (`FOR KEY SHARE`) with its rows written and not
/// committed, until this transaction ends: a way to hold another
/// transaction open at that point.
pub(crate) async fn lock_scenario_row(
    pool: &PgPool,
    scenario: Uuid,
) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("select 1 from scenarios where id = $1 for update")
        .bind(scenario)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// An open transaction holding an endpoint's row lock, as a recorder of
/// attempts or a probe taker holds it.
pub(crate) async fn lock_endpoint_row(
    pool: &PgPool,
    scenario: Uuid,
    kind: DeliveryKind,
) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("select 1 from endpoints where scenario_id = $1 and kind = $2 for update")
        .bind(scenario)
        .bind(kind.as_str())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// Returns once `n` other sessions of this test's database wait for a lock
/// (`pg_stat_activity`: the state Postgres reports, not a timer). Panics
/// when one of `tasks` ends first (it did not stop where the test meant it
/// to), or after 30 s, showing what the sessions were doing.
pub(crate) async fn until_waiting(pool: &PgPool, n: i64, tasks: &[AbortHandle]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
              where datname = current_database() and pid <> pg_backend_pid()
                and wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        if let Some(i) = tasks.iter().position(AbortHandle::is_finished) {
            panic!("task {i} ended before {n} sessions waited on a lock ({waiting} did)");
        }
        if Instant::now() > deadline {
            let sessions: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
                "select state, wait_event_type || '/' || wait_event, left(query, 120)
                   from pg_stat_activity where datname = current_database()",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            panic!("{waiting} of {n} sessions wait on a lock after 30 s: {sessions:#?}");
        }
        tokio::task::yield_now().await;
    }
}

/// The Postgres backend a transaction runs on.
pub(crate) async fn backend_pid(tx: &mut Transaction<'static, Postgres>) -> i32 {
    sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut **tx)
        .await
        .unwrap()
}

/// Checks the sessions waiting on a lock stand in line behind `holder`:
/// the first waits for `holder` alone, the second for the first alone
/// (`pg_blocking_pids`). So the second is held up by the first's
/// uncommitted work, not by `holder`.
pub(crate) async fn assert_in_line_behind(pool: &PgPool, holder: i32) {
    let waits: Vec<(i32, Vec<i32>)> = sqlx::query_as(
        "select pid, pg_blocking_pids(pid) from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let first = waits
        .iter()
        .find(|(_, by)| *by == [holder])
        .unwrap_or_else(|| panic!("no session waits for {holder} alone: {waits:?}"));
    assert!(
        waits.iter().any(|(_, by)| *by == [first.0]),
        "no session waits for {} alone: {waits:?}",
        first.0
    );
    assert_eq!(waits.len(), 2, "{waits:?}");
}
