use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

async fn scenario_to(app: &TestApp, during: &str, after: &str) -> serde_json::Value {
    app.create_scenario(json!({
        "name": "Main",
        "numbers": ["78005552233"],
        "during_call_url": during,
        "after_call_url": after,
    }))
    .await
}

/// A port nothing listens on.
async fn closed_port_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/hook")
}

async fn wait_attempts(pool: &PgPool, id: uuid::Uuid, n: usize) -> Vec<AttemptRow> {
    eventually(WAIT, &format!("{n} attempts of {id}"), || async {
        let a = attempts(pool, id).await;
        (a.len() >= n).then_some(a)
    })
    .await
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn retries_until_2xx_with_the_schedule_and_one_webhook_id(pool: PgPool) {
    let mut rx = Receiver::scripted(
        vec![Reply::Status(500), Reply::Status(500)],
        Reply::Status(200),
    )
    .await;
    let app = spawn_app(pool.clone()).await;
    scenario_to(&app, &rx.url("/during"), "").await;
    let id = start_call(&app, "313").await;

    let first = rx.next(WAIT).await;
    let second = rx.next(WAIT).await;
    let third = rx.next(WAIT).await;
    wait_state(&pool, id, "delivered", WAIT).await;

    for r in [&first, &second, &third] {
        assert_eq!(r.header("webhook-id"), id.to_string());
    }
    for (a, b) in [(&first, &second), (&second, &third)] {
        let gap = b.at - a.at;
        // 1 s ± 20 % jitter: never sooner; the upper bound only tells the
        // schedule's 1 s from a much longer wait, with room for a slow machine.
        assert!(
            gap >= Duration::from_millis(790) && gap <= Duration::from_secs(8),
            "gap {gap:?}"
        );
    }
    let rows = attempts(&pool, id).await;
    let statuses: Vec<_> = rows.iter().map(|a| a.response_status).collect();
    assert_eq!(statuses, vec![Some(500), Some(500), Some(200)]);
    assert!(rows.iter().all(|a| a.error.is_none()));
    assert_eq!(
        rows.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let d = &deliveries(&pool).await[0];
    assert_eq!(d.attempt_count, 3);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_request_carries_the_payload_and_a_verifiable_signature(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    let scenario = scenario_to(&app, &rx.url("/during"), "").await;
    let id = start_call(&app, "313").await;
    let got = rx.next(WAIT).await;

    let stored = &deliveries(&pool).await[0];
    assert_eq!(got.body, stored.payload.as_bytes());
    assert_eq!(got.header("content-type"), "application/json");
    assert!(
        got.header("user-agent").starts_with("callhook/"),
        "{}",
        got.header("user-agent")
    );
    assert_eq!(got.header("webhook-id"), id.to_string());

    // Standard Webhooks (the check is written from the spec, in helpers).
    let secret = scenario["signing_secret"].as_str().unwrap();
    let ts: i64 = got.header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert!(
        signed_with(&got, secret),
        "{} vs {}",
        got.header("webhook-signature"),
        signature_with(secret, &got)
    );

    // The page's PHP receiver reads the body as JSON: caller and callee are there.
    let body = got.json();
    assert_eq!(
        (body["caller"].as_str(), body["callee"].as_str()),
        (Some("79990009911"), Some("78005552233"))
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_hanging_receiver_times_out_then_the_delivery_fails(pool: PgPool) {
    let mut rx = Receiver::scripted(vec![], Reply::Slow(Duration::from_secs(10), 200)).await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "200ms".parse().unwrap();
        c.request_timeout = Duration::from_secs(1);
    })
    .await;
    scenario_to(&app, &rx.url("/slow"), "").await;
    let id = start_call(&app, "1").await;
    wait_state(&pool, id, "failed", WAIT).await;
    let rows = attempts(&pool, id).await;
    assert_eq!(rows.len(), 2, "the schedule allows two attempts");
    assert!(
        rows.iter()
            .all(|a| a.error.as_deref() == Some("timeout") && a.response_status.is_none()),
        "{rows:?}"
    );
    assert_eq!(rx.drain().len(), 2);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_closed_port_is_a_connect_error_until_the_schedule_runs_out(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "100ms,100ms,100ms".parse().unwrap()
    })
    .await;
    scenario_to(&app, &closed_port_url().await, "").await;
    let id = start_call(&app, "1").await;
    wait_state(&pool, id, "failed", WAIT).await;
    let rows = attempts(&pool, id).await;
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|a| a.error.as_deref() == Some("connect")),
        "{rows:?}"
    );
    let d = &deliveries(&pool).await[0];
    assert_eq!(
        (d.attempt_count, d.last_error.as_deref()),
        (4, Some("connect"))
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn after_call_never_overtakes_during_call(pool: PgPool) {
    let mut rx = Receiver::scripted(vec![Reply::Status(500)], Reply::Status(200)).await;
    let app = spawn_app(pool.clone()).await;
    scenario_to(&app, &rx.url("/during"), &rx.url("/after")).await;
    start_call(&app, "1").await;
    let (status, _) = app
        .ingest_post(
            "/api/v1/calls/1/end",
            &json!({"status": "ANSWER", "duration": 5}),
        )
        .await;
    assert_eq!(status.as_u16(), 202);
    let paths: Vec<String> = [
        rx.next(WAIT).await,
        rx.next(WAIT).await,
        rx.next(WAIT).await,
    ]
    .into_iter()
    .map(|r| r.path)
    .collect();
    assert_eq!(paths, vec!["/during", "/during", "/after"]);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn fixing_the_url_fixes_pending_retries(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    let s = scenario_to(&app, &closed_port_url().await, "").await;
    let id = start_call(&app, "1").await;
    wait_attempts(&pool, id, 1).await;

    let path = format!("/api/v1/scenarios/{}", s["id"].as_str().unwrap());
    let (status, _) = app
        .admin_put(&path, &json!({"name": "Main", "numbers": ["78005552233"], "during_call_url": rx.url("/fixed")}))
        .await;
    assert_eq!(status.as_u16(), 200);
    let got = rx.next(WAIT).await;
    assert_eq!(got.path, "/fixed");
    wait_state(&pool, id, "delivered", WAIT).await;
    let rows = attempts(&pool, id).await;
    assert_eq!(rows.last().unwrap().url, rx.url("/fixed"));
    assert_eq!(rows.last().unwrap().response_status, Some(200));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn removing_the_url_cancels_pending_retries(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let s = scenario_to(&app, &closed_port_url().await, "").await;
    let id = start_call(&app, "1").await;
    wait_attempts(&pool, id, 1).await;
    let path = format!("/api/v1/scenarios/{}", s["id"].as_str().unwrap());
    app.admin_put(
        &path,
        &json!({"name": "Main", "numbers": ["78005552233"], "during_call_url": ""}),
    )
    .await;
    wait_state(&pool, id, "cancelled", WAIT).await;
    let d = &deliveries(&pool).await[0];
    assert_eq!(d.last_error.as_deref(), Some("url_removed"));
    assert_eq!(d.attempt_count, 1, "no request after the removal");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn internal_destinations_are_refused_unless_allowed(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| c.allow_private_destinations = false).await;
    // An IP literal and a name that resolves to loopback.
    let by_name = format!("http://localhost:{}/by-name", rx.addr.port());
    let s = scenario_to(&app, &rx.url("/literal"), &by_name).await;
    let during = start_call(&app, "1").await;
    let (_, ended) = app
        .ingest_post(
            "/api/v1/calls/1/end",
            &json!({"status": "ANSWER", "duration": 5}),
        )
        .await;
    let after: uuid::Uuid = ended["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let _ = s;
    for id in [during, after] {
        let rows = wait_attempts(&pool, id, 1).await;
        assert_eq!(
            rows[0].error.as_deref(),
            Some("blocked_destination"),
            "{rows:?}"
        );
        assert_eq!(rows[0].response_status, None);
    }
    assert!(rx.drain().is_empty(), "the loopback receiver got nothing");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn retry_after_on_429_is_honoured(pool: PgPool) {
    let mut rx = Receiver::scripted(vec![Reply::RetryAfter(429, 2)], Reply::Status(200)).await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "500ms,10s".parse().unwrap()
    })
    .await;
    scenario_to(&app, &rx.url("/busy"), "").await;
    let id = start_call(&app, "1").await;
    let first = rx.next(WAIT).await;
    let second = rx.next(WAIT).await;
    let gap = second.at - first.at;
    assert!(
        // Never before the receiver's 2 s; the bound above only tells it from
        // the schedule's next step (10 s), with room for a slow machine.
        gap >= Duration::from_millis(1900) && gap < Duration::from_secs(9),
        "gap {gap:?}"
    );
    wait_state(&pool, id, "delivered", WAIT).await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn graceful_shutdown_finishes_in_flight_and_records_it(pool: PgPool) {
    let mut rx = Receiver::scripted(
        vec![Reply::Slow(Duration::from_millis(800), 200)],
        Reply::Status(200),
    )
    .await;
    let app = spawn_app(pool.clone()).await;
    scenario_to(&app, &rx.url("/slow"), "").await;
    let id = start_call(&app, "1").await;
    rx.next(WAIT).await; // the request is in flight now
    app.stop().await;
    let d = &deliveries(&pool).await[0];
    assert_eq!(
        (d.id, d.state.as_str(), d.attempt_count),
        (id, "delivered", 1)
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_hanging_receiver_does_not_starve_the_others(pool: PgPool) {
    let slow = Receiver::scripted(vec![], Reply::Slow(Duration::from_secs(30), 200)).await;
    let mut fast = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.concurrency = 4;
        c.per_host_concurrency = 2;
        c.request_timeout = Duration::from_secs(5);
        c.lease = Duration::from_secs(10);
    })
    .await;
    app.create_scenario(
        json!({"name": "slow", "numbers": ["78005552233"], "during_call_url": slow.url("/hang")}),
    )
    .await;
    app.create_scenario(
        json!({"name": "fast", "numbers": ["78005552244"], "during_call_url": fast.url("/ok")}),
    )
    .await;
    for i in 0..12 {
        start_call(&app, &format!("slow-{i}")).await;
    }
    let started = std::time::Instant::now();
    for i in 0..10 {
        let mut call = page_call(&format!("fast-{i}"));
        call["callee"] = json!("78005552244");
        let (status, _) = app.ingest_post("/api/v1/calls", &call).await;
        assert_eq!(status.as_u16(), 202);
    }
    for _ in 0..10 {
        fast.next(WAIT).await;
    }
    // With 12 hanging requests ahead of them and only 4 workers, the fast
    // receiver's webhooks would wait 15 s without the per-host limit (three
    // rounds of 5 s timeouts); the bound leaves a slow machine 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fast receiver waited {:?}",
        started.elapsed()
    );
    drop(slow);
}

/// With the API and the dispatcher in one process, a new delivery goes
/// straight to a free worker, without a claim. With every worker busy, one
/// per worker may wait for one in memory, and goes back to the queue when it
/// waited too long; past that, new deliveries wait in the queue for claims.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn new_deliveries_go_to_a_free_worker_or_else_wait_in_the_queue(pool: PgPool) {
    let mut slow = Receiver::scripted(vec![], Reply::Slow(Duration::from_millis(1800), 200)).await;
    let mut fast = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| {
        // One worker, and room for one delivery to wait for it; a handed-off
        // delivery waits at most 1 s (half of lease − request timeout, at most 1 s).
        c.concurrency = 1;
        // Claims run only when woken, so they never hold the worker's slot
        // when a call comes in.
        c.poll_interval = Duration::from_secs(60);
    })
    .await;
    app.create_scenario(
        json!({"name": "slow", "numbers": ["78005552233"], "during_call_url": slow.url("/slow")}),
    )
    .await;
    app.create_scenario(
        json!({"name": "fast", "numbers": ["78005552244"], "during_call_url": fast.url("/ok")}),
    )
    .await;
    let first = start_call(&app, "1").await;
    slow.next(WAIT).await; // the only worker is busy with it for 1.8 s
    let mut ids = Vec::new();
    for i in 2..=3 {
        let mut call = page_call(&i.to_string());
        call["callee"] = json!("78005552244");
        let (status, body) = app.ingest_post("/api/v1/calls", &call).await;
        assert_eq!(status.as_u16(), 202, "{body}");
        let id: uuid::Uuid = body["deliveries"][0]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        ids.push(id);
    }
    let leased: Vec<bool> = sqlx::query_scalar(
        "select lease_token is not null from deliveries where id = any($1) order by call_id::int",
    )
    .bind(&ids)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        leased,
        vec![true, false],
        "2 waits for the worker, leased; 3 found no room: due now, for a claim"
    );

    wait_state(&pool, first, "delivered", WAIT).await;
    for id in &ids {
        wait_state(&pool, *id, "delivered", WAIT).await;
    }
    let mut arrived = Vec::new();
    for _ in 2..=3 {
        let body = fast.next(WAIT).await.json();
        arrived.push(body["id"].as_str().unwrap().parse::<u32>().unwrap());
    }
    arrived.sort_unstable();
    assert_eq!(arrived, vec![2, 3]);
    let text = app.metrics().await;
    assert_eq!(
        (
            sample(&text, "callhook_deliveries_handed_off_total"),
            sample(&text, "callhook_handoffs_returned_total"),
        ),
        (1.0, 1.0),
        "1 went straight to the worker; 2 waited 1 s and went back to the queue\n{text}"
    );
    app.stop().await;
}
