//! Test sends: a signed sample to the scenario's URL, its answer reported.

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::*;

async fn test_send(app: &TestApp, scenario_id: Uuid, body: Value) -> (u16, Value) {
    let (s, v) = app
        .admin_post(&format!("/api/v1/scenarios/{scenario_id}/test"), &body)
        .await;
    (s.as_u16(), v)
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn test_send_to_a_200_receiver_sends_a_signed_sample_and_records_a_test_attempt(
    pool: PgPool,
) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    let s = scenario(&app, "A", "78005552233", "", &rx.url("/after")).await;
    let (status, out) = test_send(&app, s, json!({"kind": "after_call"})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], 200);
    assert_eq!(out["error"], Value::Null);
    assert_eq!(out["response_body"], "ok");
    assert_eq!(out["url"], rx.url("/after"));
    assert!(out["duration_ms"].as_i64().unwrap() >= 0);

    let got = rx.next(WAIT).await;
    assert_eq!(got.path, "/after");
    assert!(got.header("webhook-id").starts_with("test_"));
    let secret: String = sqlx::query_scalar("select signing_secret from scenarios where id = $1")
        .bind(s)
        .fetch_one(&pool)
        .await
        .unwrap();
    let expected = callhook_core::SigningSecret::parse(&secret).unwrap().sign(
        got.header("webhook-id"),
        got.header("webhook-timestamp").parse().unwrap(),
        &got.body,
    );
    assert_eq!(
        got.header("webhook-signature"),
        expected,
        "signed with the scenario's secret"
    );
    let body = got.json();
    assert_eq!(body["id"], "313");
    assert_eq!(body["date"], "2019-02-19 00:00:00");
    assert_eq!(body["status"], "ANSWER");
    assert_eq!(body["duration"], 20);
    assert_eq!(body["custom_fields"], json!({"source": "-Москва"}));

    let row: (bool, Option<Uuid>, Option<Uuid>, String, Option<i32>) = sqlx::query_as(
        "select is_test, delivery_id, scenario_id, kind, response_status from delivery_log where attempt_id = $1",
    )
    .bind(out["attempt_id"].as_i64().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (true, None, Some(s), "after_call".to_owned(), Some(200))
    );
    // A test send is no delivery.
    assert!(deliveries(&pool).await.is_empty());
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn test_send_to_a_500_receiver_reports_the_status(pool: PgPool) {
    let rx = Receiver::scripted(vec![], Reply::Status(500)).await;
    let app = spawn_app(pool.clone()).await;
    let s = scenario(&app, "A", "78005552233", &rx.url("/during"), "").await;
    let (status, out) = test_send(&app, s, json!({"kind": "during_call"})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], 500);
    assert_eq!(out["error"], Value::Null);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn test_send_to_a_closed_port_reports_connect(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let s = scenario(&app, "A", "78005552233", "", "").await;
    let url = closed_port_url().await;
    let (status, out) = test_send(&app, s, json!({"kind": "during_call", "url": url})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], Value::Null);
    assert_eq!(out["error"], "connect");
    assert_eq!(out["url"], url);
    let n: i64 =
        sqlx::query_scalar("select count(*) from delivery_log where is_test and error = 'connect'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(n, 1);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn test_send_goes_through_the_destination_guard(pool: PgPool) {
    let rx = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| c.allow_private_destinations = false).await;
    let s = scenario(&app, "A", "78005552233", &rx.url("/d"), "").await;
    let (status, out) = test_send(&app, s, json!({"kind": "during_call"})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["error"], "blocked_destination");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn test_send_refuses_bad_input_naming_the_field(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let s = scenario(&app, "A", "78005552233", "", "").await;
    for (body, field) in [
        (json!({"kind": "after_call"}), "url"),
        (json!({"kind": "during_call", "url": "ftp://x"}), "url"),
        (json!({"kind": "during_call", "url": "not a url"}), "url"),
        (json!({"kind": "sms"}), "kind"),
        (json!({}), "kind"),
        (json!({"kind": "during_call", "extra": 1}), "extra"),
    ] {
        let (status, e) = test_send(&app, s, body.clone()).await;
        assert_eq!(status, 422, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let (status, _) = test_send(&app, Uuid::now_v7(), json!({"kind": "during_call"})).await;
    assert_eq!(status, 404);
}
