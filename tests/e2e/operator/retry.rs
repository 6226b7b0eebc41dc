//! Retrying one delivery and many.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::*;

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn retry_sends_a_failed_delivery_again_and_numbering_continues(pool: PgPool) {
    let mut rx = Receiver::scripted(
        vec![Reply::Status(500), Reply::Status(500)],
        Reply::Status(200),
    )
    .await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "100ms".parse().unwrap()
    })
    .await;
    scenario(&app, "A", "78005552233", &rx.url("/d"), "").await;
    let id: Uuid = start_call(&app, "313").await;
    wait_state(&pool, id, "failed", WAIT).await;
    let first = rx.next(WAIT).await;

    let (s, d) = app
        .admin_post(&format!("/api/v1/deliveries/{id}/retry"), &json!({}))
        .await;
    assert_eq!(s.as_u16(), 200, "{d}");
    assert_eq!(d["state"], "pending");
    wait_state(&pool, id, "delivered", WAIT).await;
    let got = rx.drain();
    let last = got.last().expect("sent again");
    assert_eq!(
        last.header("webhook-id"),
        first.header("webhook-id"),
        "same webhook-id"
    );
    let numbers: Vec<_> = attempts(&pool, id)
        .await
        .iter()
        .map(|a| a.attempt)
        .collect();
    assert_eq!(numbers, [1, 2, 3]);

    // A delivered one may be sent again too.
    let (s, _) = app
        .admin_post(&format!("/api/v1/deliveries/{id}/retry"), &json!({}))
        .await;
    assert_eq!(s.as_u16(), 200);
    wait_state(&pool, id, "delivered", WAIT).await;
    eventually(WAIT, "the fourth attempt recorded", || async {
        (attempts(&pool, id).await.len() == 4).then_some(())
    })
    .await;

    let (s, e) = app
        .admin_post(
            &format!("/api/v1/deliveries/{}/retry", Uuid::now_v7()),
            &json!({}),
        )
        .await;
    assert_eq!(s.as_u16(), 404, "{e}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn retry_of_a_pending_delivery_sends_it_now(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let s = scenario(&app, "A", "78005552233", "", "").await;
    // Due in an hour (its next retry).
    let id = seed(&pool, s, "c1", "during_call", "pending", Utc::now()).await;
    let (status, d) = app
        .admin_post(&format!("/api/v1/deliveries/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status.as_u16(), 200, "{d}");
    assert_eq!(d["state"], "pending");
    // The answer's row, read in the retry's own transaction (the dispatcher
    // may take it the moment after, and lease it).
    let next: DateTime<Utc> = d["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(next <= Utc::now(), "due now, not at its next retry: {d}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn bulk_retry_requeues_the_matching_final_deliveries_and_counts_them(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    let a = scenario(&app, "A", "78005552233", &rx.url("/a"), &rx.url("/a")).await;
    let b = scenario(&app, "B", "78005552234", &rx.url("/b"), &rx.url("/b")).await;
    let now = Utc::now();
    let ago = |m: i64| now - chrono::Duration::minutes(m);
    seed(&pool, a, "a1", "during_call", "failed", ago(120)).await;
    let a2 = seed(&pool, a, "a2", "during_call", "failed", ago(50)).await;
    let a3 = seed(&pool, a, "a3", "during_call", "failed", ago(40)).await;
    seed(&pool, a, "a4", "during_call", "delivered", ago(30)).await;
    seed(&pool, a, "a5", "during_call", "pending", ago(20)).await;
    let b1 = seed(&pool, b, "b1", "during_call", "failed", ago(10)).await;

    let (s, e) = app.admin_post("/api/v1/deliveries/retry", &json!({})).await;
    assert_eq!(s.as_u16(), 422, "no filter: {e}");
    assert_eq!(e["error"]["code"], "filter_required");

    let since = ago(60).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, r) = app
        .admin_post(
            &format!("/api/v1/deliveries/retry?scenario_id={a}&state=failed&since={since}"),
            &json!({}),
        )
        .await;
    assert_eq!(s.as_u16(), 200, "{r}");
    assert_eq!(r, json!({"requeued": 2}));
    let mut got = HashSet::new();
    while got.len() < 2 {
        got.insert(rx.next(WAIT).await.header("webhook-id").to_owned());
    }
    assert_eq!(got, HashSet::from([a2.to_string(), a3.to_string()]));
    let state: String = sqlx::query_scalar("select state from deliveries where id = $1")
        .bind(b1)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "failed", "other scenarios untouched");

    // Pending ones are not counted; the other filters work the same.
    let (_, r) = app
        .admin_post("/api/v1/deliveries/retry?call_id=a5", &json!({}))
        .await;
    assert_eq!(r, json!({"requeued": 0}));
    let (_, r) = app
        .admin_post(
            &format!("/api/v1/deliveries/retry?kind=during_call&scenario_id={b}"),
            &json!({}),
        )
        .await;
    assert_eq!(r, json!({"requeued": 1}));
    let (s, e) = app
        .admin_post("/api/v1/deliveries/retry?state=gone", &json!({}))
        .await;
    assert_eq!(s.as_u16(), 422);
    assert_eq!(e["error"]["field"], "state");
}
