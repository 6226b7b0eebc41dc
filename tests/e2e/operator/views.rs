//! What operators read outside the API's lists: the `delivery_log` view,
//! OpenAPI, metrics, and what retention leaves.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::*;

/// call_id, scenario_name, kind, url, attempt, response_status, is_test
type LogRow = (String, String, String, String, i32, Option<i32>, bool);

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn delivery_log_view_has_one_row_per_attempt_and_is_read_only(pool: PgPool) {
    let rx = Receiver::scripted(vec![Reply::Status(500)], Reply::Status(200)).await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "100ms".parse().unwrap()
    })
    .await;
    scenario(&app, "Main site", "78005552233", &rx.url("/d"), "").await;
    let id: Uuid = start_call(&app, "313").await;
    wait_state(&pool, id, "delivered", WAIT).await;
    eventually(WAIT, "two attempts", || async {
        (attempts(&pool, id).await.len() == 2).then_some(())
    })
    .await;

    let rows: Vec<LogRow> = sqlx::query_as(
        "select call_id, scenario_name, kind, url, attempt, response_status, is_test
           from delivery_log where call_id = '313' order by attempt",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let url = rx.url("/d");
    let row = |attempt, status| {
        (
            "313".to_owned(),
            "Main site".to_owned(),
            "during_call".to_owned(),
            url.clone(),
            attempt,
            Some(status),
            false,
        )
    };
    assert_eq!(rows, [row(1, 500), row(2, 200)]);
    let err = sqlx::query("update delivery_log set error = 'x'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot update view"), "{err}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn openapi_documents_the_operator_routes(pool: PgPool) {
    let app = spawn_app(pool).await;
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method) in [
        ("/api/v1/calls/{id}", "get"),
        ("/api/v1/deliveries", "get"),
        ("/api/v1/deliveries/{id}", "get"),
        ("/api/v1/deliveries/{id}/retry", "post"),
        ("/api/v1/deliveries/retry", "post"),
        ("/api/v1/scenarios/{id}/test", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} documented");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path} documents 401"
        );
    }
    let params: Vec<_> = doc["paths"]["/api/v1/deliveries"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "scenario_id",
        "call_id",
        "state",
        "kind",
        "since",
        "until",
        "limit",
        "after",
    ] {
        assert!(params.contains(&p), "parameter {p}");
    }
}

/// The value of a sample line of a Prometheus text exposition, 0 when absent.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn metrics_count_real_deliveries_and_attempts(pool: PgPool) {
    let ok = Receiver::ok().await;
    let bad = Receiver::scripted(vec![], Reply::Status(500)).await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "100ms".parse().unwrap()
    })
    .await;
    scenario(&app, "ok", "78005552233", &ok.url("/d"), "").await;
    scenario(&app, "bad", "78005552234", &bad.url("/d"), "").await;
    scenario(&app, "off", "78005552235", &ok.url("/gone"), "").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, b) = app
            .ingest_post("/api/v1/calls", &page_call(&format!("ok{i}")))
            .await;
        ids.push(
            b["deliveries"][0]["id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        );
    }
    let mut failing = page_call("bad1");
    failing["callee"] = json!("78005552234");
    let (_, b) = app.ingest_post("/api/v1/calls", &failing).await;
    let bad_id: Uuid = b["deliveries"][0]["id"].as_str().unwrap().parse().unwrap();
    for id in &ids {
        wait_state(&pool, *id, "delivered", WAIT).await;
    }
    wait_state(&pool, bad_id, "failed", WAIT).await;

    let text = app.metrics().await;
    let m = |k: &str| sample(&text, k);
    assert_eq!(
        m(r#"callhook_deliveries_total{kind="during_call",outcome="delivered"}"#),
        3.0,
        "{text}"
    );
    assert_eq!(
        m(r#"callhook_deliveries_total{kind="during_call",outcome="failed"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(m(r#"callhook_attempts_total{error="none"}"#), 3.0, "{text}");
    assert_eq!(
        m(r#"callhook_attempts_total{error="http_status"}"#),
        2.0,
        "{text}"
    );
    assert_eq!(m("callhook_receiver_response_seconds_count"), 5.0, "{text}");
    assert_eq!(
        m("callhook_ingest_to_delivery_seconds_count"),
        3.0,
        "{text}"
    );
    // The gauges are read on a timer (50 ms in tests): the next reading.
    eventually(WAIT, "the gauges to show an empty queue", || async {
        let text = app.metrics().await;
        (sample(&text, "callhook_pending_deliveries") == 0.0
            && sample(&text, "callhook_oldest_pending_age_seconds") == 0.0)
            .then_some(())
    })
    .await;

    // A pending delivery shows in the gauges.
    let s: Uuid = sqlx::query_scalar("select id from scenarios where name = 'off'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let later = seed(
        &pool,
        s,
        "later",
        "during_call",
        "pending",
        Utc::now() - chrono::Duration::seconds(30),
    )
    .await;
    eventually(WAIT, "the gauges to show the pending delivery", || async {
        let text = app.metrics().await;
        (sample(&text, "callhook_pending_deliveries") == 1.0
            && sample(&text, "callhook_oldest_pending_age_seconds") >= 30.0)
            .then_some(())
    })
    .await;

    // Removing its URL cancels it in the same save, and counts that.
    let (st, _) = app
        .admin_put(
            &format!("/api/v1/scenarios/{s}"),
            &json!({"name": "off", "numbers": ["78005552235"]}),
        )
        .await;
    assert_eq!(st.as_u16(), 200);
    let state: String = sqlx::query_scalar("select state from deliveries where id = $1")
        .bind(later)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "cancelled");
    let text = app.metrics().await;
    assert_eq!(
        sample(
            &text,
            r#"callhook_deliveries_total{kind="during_call",outcome="cancelled"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"callhook_attempts_total{error="none"}"#),
        3.0,
        "no attempt for a cancellation"
    );
}

async fn seed_attempt(pool: &PgPool, delivery_id: Uuid, at: DateTime<Utc>) {
    sqlx::query(
        "insert into delivery_attempts (delivery_id, attempt, url, started_at, duration_ms, response_status)
         values ($1, 1, 'http://example.com/', $2, 5, 500)",
    )
    .bind(delivery_id)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn retention_deletes_old_history_and_keeps_pending_and_failed(pool: PgPool) {
    // Rows are written before the app starts; its retention pass runs at start.
    let s = Uuid::now_v7();
    sqlx::query("insert into scenarios (id, name, signing_secret) values ($1, 'A', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')")
        .bind(s)
        .execute(&pool)
        .await
        .unwrap();
    let old = Utc::now() - chrono::Duration::days(40);
    let recent = Utc::now() - chrono::Duration::days(1);
    let old_delivered = seed(&pool, s, "old-delivered", "during_call", "delivered", old).await;
    seed_attempt(&pool, old_delivered, old).await;
    let old_cancelled = seed(&pool, s, "old-cancelled", "during_call", "cancelled", old).await;
    let old_failed = seed(&pool, s, "old-failed", "during_call", "failed", old).await;
    seed_attempt(&pool, old_failed, old).await;
    let old_pending = seed(&pool, s, "old-pending", "after_call", "pending", old).await;
    let recent_delivered = seed(&pool, s, "recent", "during_call", "delivered", recent).await;
    seed_attempt(&pool, recent_delivered, recent).await;
    sqlx::query(
        "insert into calls (id, scenario_id, caller, callee, started_at, created_at)
         values ('old-bare', $1, '79990009911', '78005552233', $2, $2)",
    )
    .bind(s)
    .bind(old)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into delivery_attempts (scenario_id, kind, is_test, attempt, url, started_at, duration_ms)
         values ($1, 'during_call', true, 1, 'http://example.com/', $2, 5)",
    )
    .bind(s)
    .bind(old)
    .execute(&pool)
    .await
    .unwrap();

    let _app = spawn_app_with(pool.clone(), |c| c.retention_days = 30).await;
    let calls = eventually(WAIT, "old history deleted", || async {
        let calls: Vec<String> = sqlx::query_scalar("select id from calls order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
        (calls.len() == 3).then_some(calls)
    })
    .await;
    assert_eq!(calls, ["old-failed", "old-pending", "recent"]);
    let kept: Vec<Uuid> = sqlx::query_scalar("select id from deliveries order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut want = vec![old_failed, old_pending, recent_delivered];
    want.sort();
    assert_eq!(kept, want);
    assert!(!kept.contains(&old_delivered) && !kept.contains(&old_cancelled));
    let attempts: Vec<Option<Uuid>> =
        sqlx::query_scalar("select delivery_id from delivery_attempts")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        attempts,
        [Some(recent_delivered)],
        "old attempts (test sends too) are gone"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn retention_days_zero_keeps_everything(pool: PgPool) {
    let s = Uuid::now_v7();
    sqlx::query("insert into scenarios (id, name, signing_secret) values ($1, 'A', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')")
        .bind(s)
        .execute(&pool)
        .await
        .unwrap();
    let old = Utc::now() - chrono::Duration::days(400);
    seed(&pool, s, "old-delivered", "during_call", "delivered", old).await;
    let app = spawn_app_with(pool.clone(), |c| c.retention_days = 0).await;
    // The app answers, so start-up (where a pass would have begun) is done.
    let (st, _) = app.admin_get("/api/v1/deliveries").await;
    assert_eq!(st.as_u16(), 200);
    app.stop().await;
    assert_eq!(deliveries(&pool).await.len(), 1);
}
