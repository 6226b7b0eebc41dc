//! Fair, priority-aware dispatch: one scenario's flood or slow receiver
//! delays nobody else's webhooks (docs/scheduling.md). Every moment the tests
//! act on is made certain: the flood's receiver is held closed (a gate) and
//! the claims' state is read from Postgres.

use std::time::Duration;

use callhook::Role;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;
use crate::process::*;

mod caps;

pub(super) const WAIT: Duration = Duration::from_secs(60);
pub(super) const FLOOD: &str = "78005550001";
pub(super) const QUIET: &str = "78005550002";

/// A scenario sending only during-call webhooks (or only after-call ones)
/// to `url`, for calls to `number`; returns its id.
pub(super) async fn scenario(
    app: &TestApp,
    name: &str,
    number: &str,
    during: &str,
    after: &str,
) -> String {
    let v = app
        .create_scenario(json!({"name": name, "numbers": [number],
                                "during_call_url": during, "after_call_url": after}))
        .await;
    v["id"].as_str().unwrap().to_owned()
}

pub(super) fn call(id: &str, callee: &str) -> Value {
    json!({"id": id, "caller": "79990009911", "callee": callee})
}

/// `n` calls to `callee` through the batch API, 1,000 to a request.
pub(super) async fn flood(app: &TestApp, prefix: &str, callee: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let calls: Vec<Value> = chunk
            .iter()
            .map(|i| call(&format!("{prefix}{i}"), callee))
            .collect();
        app.store_batch(&json!({ "calls": calls })).await;
    }
}

/// Deliveries of a scenario claimed and not yet recorded (lease running).
pub(super) async fn leased(pool: &PgPool, scenario_id: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from deliveries
          where scenario_id = $1::uuid and state = 'pending' and lease_token is not null
            and next_attempt_at > now()",
    )
    .bind(scenario_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// How many of `flood`'s attempts started after `quiet`'s first delivery was
/// stored and before its first attempt started.
async fn flood_sent_ahead_of_quiet(pool: &PgPool, flood: &str, quiet: &str) -> i64 {
    sqlx::query_scalar(
        "with q as (
             select d.created_at, a.started_at
               from deliveries d join delivery_attempts a on a.delivery_id = d.id
              where d.scenario_id = $2::uuid and d.kind = 'during_call'
              order by a.started_at limit 1
         )
         select count(*) from delivery_attempts a join deliveries d on d.id = a.delivery_id, q
          where d.scenario_id = $1::uuid
            and a.started_at > q.created_at and a.started_at < q.started_at",
    )
    .bind(flood)
    .bind(quiet)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A flood scenario with 2,000 due deliveries to a receiver held closed, a
/// quiet scenario beside it, and an API-only process that stored them (no
/// dispatcher yet: the flood is due ahead of anything the quiet one sends).
struct Flooded {
    api: TestApp,
    flood_id: String,
    quiet_id: String,
    quiet_rx: Receiver,
    arrived: Tally,
    gate: Gate,
}

async fn flooded(pool: &PgPool) -> Flooded {
    let (flood_url, arrived, gate) = gated_counting_receiver(Duration::ZERO, 0).await;
    let quiet_rx = Receiver::ok().await;
    let api = spawn_app_with(pool.clone(), |c| c.role = Role::Api).await;
    let flood_id = scenario(&api, "flood", FLOOD, &flood_url, "").await;
    let quiet_id = scenario(&api, "quiet", QUIET, &quiet_rx.url("/during"), "").await;
    flood(&api, "f", FLOOD, 2000).await;
    Flooded {
        api,
        flood_id,
        quiet_id,
        quiet_rx,
        arrived,
        gate,
    }
}

/// Reports the quiet scenario's call, opens the flood's receiver and waits
/// for the quiet webhook to be delivered.
async fn quiet_call_through(pool: &PgPool, f: &mut Flooded) {
    let (status, body) = f.api.ingest_post("/api/v1/calls", &call("q1", QUIET)).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    f.gate.open();
    assert_eq!(f.quiet_rx.next(WAIT).await.json()["id"], "q1");
    let id = body["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wait_state(pool, id, "delivered", WAIT).await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_flood_behind_a_held_receiver_delays_no_other_scenarios_during_call_webhook(
    pool: PgPool,
) {
    const SEATS: usize = 8;
    let mut f = flooded(&pool).await;
    // The endpoint cap is above the seats: what is measured is the round,
    // not the cap.
    let dispatcher = spawn_app_with(pool.clone(), |c| {
        c.role = Role::Dispatcher;
        c.concurrency = SEATS;
        c.endpoint_max_in_flight = Some(100);
    })
    .await;
    // Every seat is held by the flood, and the dispatcher has claimed as many
    // again to wait for a seat (its door's room): nothing more can go.
    eventually(WAIT, "the flood holds every seat and the door", || async {
        (f.arrived.total() == SEATS && leased(&pool, &f.flood_id).await == 2 * SEATS as i64)
            .then_some(())
    })
    .await;

    quiet_call_through(&pool, &mut f).await;

    // Only what was already claimed for the door went ahead of it: not the
    // 1,984 due deliveries behind.
    let ahead = flood_sent_ahead_of_quiet(&pool, &f.flood_id, &f.quiet_id).await;
    eprintln!("flood webhooks sent ahead of the quiet one: {ahead}");
    assert!(
        ahead <= SEATS as i64,
        "{ahead} flood webhooks were sent ahead of the quiet scenario's (seats: {SEATS})"
    );
    dispatcher.stop().await;
    f.api.stop().await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_flood_delays_no_other_scenario_with_two_dispatcher_processes(pool: PgPool) {
    const SEATS_EACH: usize = 4;
    let mut f = flooded(&pool).await;
    let db = database_url_of(&pool);
    let env = [
        ("CALLHOOK_ROLE", "dispatcher"),
        ("CALLHOOK_CONCURRENCY", "4"),
        ("CALLHOOK_ENDPOINT_MAX_IN_FLIGHT", "100"),
        ("CALLHOOK_NO_MIGRATE", "true"),
    ];
    let d1 = ServerProcess::start(&db, &env).await;
    let d2 = ServerProcess::start(&db, &env).await;
    let seats = 2 * SEATS_EACH;
    eventually(
        WAIT,
        "the flood holds every seat of both and their doors",
        || async {
            (f.arrived.total() == seats && leased(&pool, &f.flood_id).await == 2 * seats as i64)
                .then_some(())
        },
    )
    .await;

    quiet_call_through(&pool, &mut f).await;

    // Ahead of it: what both doors held, and at most one claim of the other
    // process made while this one held the quiet endpoint's turn.
    let ahead = flood_sent_ahead_of_quiet(&pool, &f.flood_id, &f.quiet_id).await;
    eprintln!("flood webhooks sent ahead of the quiet one: {ahead}");
    assert!(
        ahead <= (seats + SEATS_EACH) as i64,
        "{ahead} flood webhooks were sent ahead of the quiet scenario's (seats: {seats})"
    );
    d1.kill().await;
    d2.kill().await;
    f.api.stop().await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_after_call_webhook_due_with_another_calls_during_call_one_goes_second(pool: PgPool) {
    let (hold_url, held, gate) = gated_counting_receiver(Duration::ZERO, 0).await;
    let mut rx = Receiver::ok().await;
    // One seat: a held scenario takes it and the door's one place.
    let app = spawn_app_with(pool.clone(), |c| c.concurrency = 1).await;
    let hold_id = scenario(&app, "hold", "78005550009", &hold_url, "").await;
    let after_id = scenario(&app, "after", "78005550003", "", &rx.url("/after")).await;
    let during_id = scenario(&app, "during", "78005550004", &rx.url("/during"), "").await;
    app.ingest_post("/api/v1/calls", &call("h1", "78005550009"))
        .await;
    app.ingest_post("/api/v1/calls", &call("h2", "78005550009"))
        .await;
    eventually(WAIT, "the seat and the door held", || async {
        (held.total() == 1 && leased(&pool, &hold_id).await == 2).then_some(())
    })
    .await;

    // An after-call webhook, then a during-call one of another call.
    app.ingest_post("/api/v1/calls", &call("a1", "78005550003"))
        .await;
    let (status, body) = app
        .ingest_post(
            "/api/v1/calls/a1/end",
            &json!({"status": "ANSWER", "duration": 12}),
        )
        .await;
    assert_eq!(status.as_u16(), 202, "{body}");
    app.ingest_post("/api/v1/calls", &call("d1", "78005550004"))
        .await;
    // Due at the same moment, their endpoints' turns alike.
    sqlx::query(
        "update deliveries set next_attempt_at = now() - interval '1 second'
          where scenario_id in ($1::uuid, $2::uuid) and state = 'pending'",
    )
    .bind(&after_id)
    .bind(&during_id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "update endpoint_queue set turn_at = now() - interval '10 seconds', due_at = now() - interval '1 second'
          where scenario_id in ($1::uuid, $2::uuid)",
    )
    .bind(&after_id)
    .bind(&during_id)
    .execute(&pool)
    .await
    .unwrap();
    gate.open();
    let first = rx.next(WAIT).await;
    let second = rx.next(WAIT).await;
    assert_eq!(
        (first.path.as_str(), second.path.as_str()),
        ("/during", "/after"),
        "the fresh during-call webhook goes ahead of the after-call one"
    );
    app.stop().await;
}
