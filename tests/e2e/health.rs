//! Endpoint health: a receiver that stays down is noticed, paused, probed,
//! told to the operator, and brought back without losing a call.

use std::time::{Duration, Instant};

use callhook::ServeConfig;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);
const OPERATOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Short health settings; operator events to `ops`.
fn quick(c: &mut ServeConfig, ops: &Receiver) {
    c.failing_after = 3;
    c.pause_after = Duration::from_secs(2);
    c.probe_interval = Duration::from_secs(1);
    c.disable_after = Duration::from_secs(3600);
    c.drain_rate = 100;
    // Long enough that nothing runs out of retries before the pause.
    c.retry_schedule = ["300ms"; 30].join(",").parse().unwrap();
    c.operator_webhook_url = Some(ops.url("/ops"));
    c.operator_webhook_secret = Some(OPERATOR_SECRET.to_owned().into());
}

async fn scenario(app: &TestApp, during: &str, after: &str) -> String {
    let s = app
        .create_scenario(json!({"name": "Main", "numbers": ["78005552233"],
                                "during_call_url": during, "after_call_url": after}))
        .await;
    assert_eq!(s["health"]["during_call"]["state"], "healthy", "{s}");
    s["id"].as_str().unwrap().to_owned()
}

async fn state_of(app: &TestApp, id: &str, kind: &str) -> String {
    let (_, s) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    s["health"][kind]["state"].as_str().unwrap().to_owned()
}

async fn wait_endpoint(app: &TestApp, id: &str, kind: &str, state: &str) {
    eventually(WAIT, &format!("{kind} endpoint {state}"), || async {
        (state_of(app, id, kind).await == state).then_some(())
    })
    .await;
}

async fn end(app: &TestApp, call: &str) {
    let (status, body) = app
        .ingest_post(
            &format!("/api/v1/calls/{call}/end"),
            &json!({"status": "ANSWER", "duration": 5}),
        )
        .await;
    assert_eq!(status.as_u16(), 202, "{body}");
}

/// The operator events received so far: (type, kind, webhook-id), each
/// checked against the operator secret.
fn events(ops: &mut Receiver) -> Vec<(String, String, String)> {
    ops.drain()
        .into_iter()
        .map(|r| {
            assert!(
                signed_with(&r, OPERATOR_SECRET),
                "operator events are signed"
            );
            let v = r.json();
            (
                v["type"].as_str().unwrap().to_owned(),
                v["data"]["kind"].as_str().unwrap().to_owned(),
                r.header("webhook-id").to_owned(),
            )
        })
        .collect()
}

fn has(events: &[(String, String, String)], ty: &str, kind: &str) -> bool {
    events.iter().any(|(t, k, _)| t == ty && k == kind)
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_receiver_down_is_paused_probed_and_drained_in_order_when_it_recovers(pool: PgPool) {
    let rx = Receiver::scripted(vec![], Reply::Status(503)).await;
    let mut ops = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| quick(c, &ops)).await;
    let id = scenario(&app, &rx.url("/during"), &rx.url("/after")).await;
    for call in ["1", "2", "3", "4"] {
        start_call(&app, call).await;
        end(&app, call).await;
    }

    wait_endpoint(&app, &id, "during_call", "paused").await;
    // Calls that come while it is paused wait too.
    start_call(&app, "5").await;
    end(&app, "5").await;
    wait_endpoint(&app, &id, "after_call", "paused").await;

    // While paused, at most one attempt per probe interval reaches it.
    let window = Duration::from_secs(4);
    let since = chrono::Utc::now();
    // Not a wait: an observation window; the assertion below is an upper bound
    // on attempts within it, which a slower machine only makes easier to hold.
    tokio::time::sleep(window).await;
    let attempts: i64 = sqlx::query_scalar(
        "select count(*) from delivery_attempts a join deliveries d on d.id = a.delivery_id
          where a.started_at >= $1 and d.kind = 'during_call'",
    )
    .bind(since)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        attempts <= 5,
        "{attempts} during-call attempts in {window:?} while paused"
    );
    let failed: i64 = sqlx::query_scalar("select count(*) from deliveries where state = 'failed'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        failed, 0,
        "no delivery ends failed while its receiver is away"
    );
    let (_, listed) = app.admin_get("/api/v1/endpoints?state=paused").await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[0]["deliveries_waiting"], 5, "{listed}");
    let seen = events(&mut ops);
    for ty in ["endpoint.failing", "endpoint.paused"] {
        assert!(has(&seen, ty, "during_call"), "{ty}: {seen:?}");
    }

    // The receiver comes back: healthy within a probe interval or two, and
    // every waiting delivery delivered, each call's during-call one first.
    rx.answer(Reply::Status(200));
    let back = Instant::now();
    wait_endpoint(&app, &id, "during_call", "healthy").await;
    assert!(
        back.elapsed() < Duration::from_secs(10),
        "{:?}",
        back.elapsed()
    );
    eventually(WAIT, "every delivery delivered", || async {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from deliveries where state = 'delivered' and call_id is not null",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (n == 10).then_some(())
    })
    .await;
    let out_of_order: i64 = sqlx::query_scalar(
        "select count(*) from deliveries a join deliveries d on d.call_id = a.call_id
          where a.kind = 'after_call' and d.kind = 'during_call' and a.delivered_at < d.delivered_at",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        out_of_order, 0,
        "each call's during-call webhook was delivered first"
    );
    wait_endpoint(&app, &id, "after_call", "healthy").await;
    wait_event(&mut ops, "endpoint.recovered", "during_call").await;
}

/// Reads operator events until one of this type and kind arrives.
async fn wait_event(ops: &mut Receiver, ty: &str, kind: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = ops.next(left).await;
        assert!(
            signed_with(&r, OPERATOR_SECRET),
            "operator events are signed"
        );
        let v = r.json();
        if v["type"] == ty && v["data"]["kind"] == kind {
            return;
        }
    }
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_410_disables_at_once_and_enable_sends_what_waited(pool: PgPool) {
    let mut rx = Receiver::scripted(vec![Reply::Status(410)], Reply::Status(200)).await;
    let mut ops = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| quick(c, &ops)).await;
    let id = scenario(&app, &rx.url("/during"), "").await;
    start_call(&app, "1").await;
    assert_eq!(rx.next(WAIT).await.path, "/during");
    wait_endpoint(&app, &id, "during_call", "disabled").await;
    start_call(&app, "2").await;
    // Nothing more reaches it, not even probes.
    let quiet = tokio::time::timeout(Duration::from_secs(3), rx.next(WAIT)).await;
    assert!(quiet.is_err(), "a disabled endpoint gets nothing");
    let waiting: Vec<(String, bool)> = sqlx::query_as(
        "select state, parked from deliveries where call_id is not null order by id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        waiting,
        vec![("pending".into(), true), ("pending".into(), true)]
    );

    let (status, enabled) = app
        .admin_post(
            &format!("/api/v1/scenarios/{id}/endpoints/during_call/enable"),
            &json!({}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{enabled}");
    assert_eq!(enabled["endpoint"]["state"], "healthy");
    assert_eq!(enabled["deliveries"], 2);
    rx.next(WAIT).await;
    rx.next(WAIT).await;
    eventually(WAIT, "both delivered", || async {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from deliveries where state = 'delivered' and call_id is not null",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (n == 2).then_some(())
    })
    .await;
    let seen = events(&mut ops);
    assert!(has(&seen, "endpoint.disabled", "during_call"), "{seen:?}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn pause_and_enable_by_hand_a_new_url_and_a_good_test_send_re_enable(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let ops = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| quick(c, &ops)).await;
    let id = scenario(&app, &rx.url("/during"), &rx.url("/after")).await;
    let path = |kind: &str, what: &str| format!("/api/v1/scenarios/{id}/endpoints/{kind}/{what}");

    let (status, paused) = app
        .admin_post(&path("during_call", "pause"), &json!({}))
        .await;
    assert_eq!(status.as_u16(), 200, "{paused}");
    assert_eq!(paused["endpoint"]["state"], "paused");
    start_call(&app, "1").await;
    let quiet = tokio::time::timeout(Duration::from_secs(2), rx.next(WAIT)).await;
    assert!(quiet.is_err(), "paused by hand: nothing sent, no probe");
    let (_, enabled) = app
        .admin_post(&path("during_call", "enable"), &json!({}))
        .await;
    assert_eq!(enabled["deliveries"], 1, "{enabled}");
    assert_eq!(rx.next(WAIT).await.path, "/during");

    // A new URL re-enables.
    app.admin_post(&path("during_call", "pause"), &json!({}))
        .await;
    let (status, saved) = app
        .admin_put(
            &format!("/api/v1/scenarios/{id}"),
            &json!({"name": "Main", "numbers": ["78005552233"],
                    "during_call_url": rx.url("/during2"), "after_call_url": rx.url("/after")}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{saved}");
    assert_eq!(
        saved["health"]["during_call"]["state"], "healthy",
        "{saved}"
    );

    // So does a successful test send to the endpoint's own URL.
    app.admin_post(&path("after_call", "pause"), &json!({}))
        .await;
    assert_eq!(state_of(&app, &id, "after_call").await, "paused");
    let (status, sent) = app
        .admin_post(
            &format!("/api/v1/scenarios/{id}/test"),
            &json!({"kind": "after_call"}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), sent["status"].clone()),
        (200, json!(200)),
        "{sent}"
    );
    assert_eq!(state_of(&app, &id, "after_call").await, "healthy");

    let (status, err) = app
        .admin_post(&path("operator_event", "pause"), &json!({}))
        .await;
    assert_eq!(status.as_u16(), 422, "{err}");
    assert_eq!(err["error"]["field"], "kind");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_after_call_to_a_healthy_url_goes_out_while_the_during_call_endpoint_is_paused(
    pool: PgPool,
) {
    let down = Receiver::scripted(vec![], Reply::Status(503)).await;
    let mut up = Receiver::ok().await;
    let ops = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| quick(c, &ops)).await;
    let id = scenario(&app, &down.url("/during"), &up.url("/after")).await;
    start_call(&app, "1").await;
    end(&app, "1").await;
    wait_endpoint(&app, &id, "during_call", "paused").await;
    assert_eq!(
        up.next(WAIT).await.path,
        "/after",
        "no longer waits for the during-call webhook"
    );
    start_call(&app, "2").await;
    end(&app, "2").await;
    let got = up.next(WAIT).await;
    assert_eq!(got.json()["id"], "2");
    let during: Vec<(String, bool)> = sqlx::query_as(
        "select state, parked from deliveries where kind = 'during_call' order by id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(during.iter().all(|(s, _)| s == "pending"), "{during:?}");
    let (_, v) = app.admin_get("/api/v1/endpoints").await;
    let worst: Vec<Value> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].clone())
        .collect();
    assert_eq!(worst[0], "paused", "worst first: {v}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn sigkill_around_transitions_sends_each_operator_event_once(pool: PgPool) {
    use crate::process::{database_url_of, ServerProcess};
    use rand::Rng as _;

    let rx = Receiver::scripted(vec![], Reply::Status(503)).await;
    let mut ops = Receiver::ok().await;
    let db = database_url_of(&pool);
    let schedule = ["100ms"; 60].join(",");
    let ops_url = ops.url("/ops");
    let env = [
        ("CALLHOOK_FAILING_AFTER", "20"),
        ("CALLHOOK_PAUSE_AFTER", "3s"),
        ("CALLHOOK_PROBE_INTERVAL", "1s"),
        ("CALLHOOK_RETRY_SCHEDULE", schedule.as_str()),
        ("CALLHOOK_OPERATOR_WEBHOOK_URL", ops_url.as_str()),
        ("CALLHOOK_OPERATOR_WEBHOOK_SECRET", OPERATOR_SECRET),
    ];
    let http = reqwest::Client::new();
    let mut server = ServerProcess::start(&db, &env).await;
    let (_, created) = server
        .post(
            &http,
            "/api/v1/scenarios",
            ADMIN,
            &json!({"name": "Main", "numbers": ["78005552233"], "during_call_url": rx.url("/during")}),
        )
        .await;
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    for call in 0..20 {
        let (status, _) = server
            .post(
                &http,
                "/api/v1/calls",
                INGEST,
                &page_call(&call.to_string()),
            )
            .await;
        assert_eq!(status, 202);
    }
    // Kill the process again and again while failures pile up and the
    // endpoint goes failing, then paused.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut kills = 0;
    loop {
        let state: String = sqlx::query_scalar(
            "select state from endpoints where scenario_id = $1 and kind = 'during_call'",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if state == "paused" {
            break;
        }
        assert!(Instant::now() < deadline, "the endpoint was never paused");
        let pause = rand::rng().random_range(150..700);
        // Not a wait: the fault timeline's pacing between kills (random on purpose);
        // the loop ends on a state read from Postgres.
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.kill().await;
        kills += 1;
        server = ServerProcess::start(&db, &env).await;
    }
    // Every transition's event arrives, and only once (by webhook-id).
    let mut seen: std::collections::HashMap<String, std::collections::HashSet<String>> =
        Default::default();
    let deadline = Instant::now() + WAIT;
    while !(seen.contains_key("endpoint.failing") && seen.contains_key("endpoint.paused")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = ops.next(left).await;
        assert!(signed_with(&r, OPERATOR_SECRET));
        seen.entry(r.json()["type"].as_str().unwrap().to_owned())
            .or_default()
            .insert(r.header("webhook-id").to_owned());
    }
    let queued: Vec<(String, i64)> = sqlx::query_as(
        "select payload::json->>'type', count(*) from deliveries where kind = 'operator_event' group by 1 order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        queued,
        vec![
            ("endpoint.failing".into(), 1),
            ("endpoint.paused".into(), 1)
        ],
        "one event per transition, {kills} kills"
    );
    for (ty, ids) in &seen {
        assert_eq!(ids.len(), 1, "{ty}: one webhook-id, {kills} kills");
    }
    server.kill().await;
}
