//! Delivery rules: each webhook's conditions on the call (issue 26's
//! first half; headers per webhook are not built yet).

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

/// call id, kind, state, last error, filtered by.
type DeliveryLine = (String, String, String, Option<String>, Option<Value>);

async fn call(app: &TestApp, id: &str, caller: &str, end: Option<(&str, i64)>) {
    let mut c = page_call(id);
    c["callee"] = json!("78005552233");
    c["caller"] = json!(caller);
    let (status, body) = app.ingest_post("/api/v1/calls", &c).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    if let Some((status_text, duration)) = end {
        let (status, body) = app
            .ingest_post(
                &format!("/api/v1/calls/{id}/end"),
                &json!({"status": status_text, "duration": duration}),
            )
            .await;
        assert_eq!(status.as_u16(), 202, "{body}");
    }
}

/// Every delivery final (delivered or cancelled): a state read from Postgres.
async fn settled(pool: &PgPool, n: i64) {
    eventually(WAIT, "every delivery final", || async {
        let final_: i64 =
            sqlx::query_scalar("select count(*) from deliveries where state <> 'pending'")
                .fetch_one(pool)
                .await
                .unwrap();
        (final_ == n).then_some(())
    })
    .await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn answered_calls_over_ten_seconds_get_the_after_call_webhook_and_the_rest_are_filtered(
    pool: PgPool,
) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    let filter = json!([{"field": "status", "op": "in", "value": ["ANSWER"]},
                        {"field": "duration", "op": "gte", "value": 10}]);
    let s = app
        .create_scenario(json!({
            "name": "CRM", "numbers": ["78005552233"],
            "during_call_url": rx.url("/during"), "after_call_url": rx.url("/after"),
            "after_call_filter": filter,
        }))
        .await;
    assert_eq!(s["after_call_filter"], filter, "answered as saved");
    assert!(
        s.get("during_call_filter").is_none(),
        "none: not in the answer"
    );
    for (id, status, duration) in [
        ("a1", "ANSWER", 20),
        ("a2", "ANSWER", 5),
        ("a3", "BUSY", 0),
        ("a4", "ANSWER", 30),
    ] {
        call(&app, id, "79990009911", Some((status, duration))).await;
    }
    settled(&pool, 8).await;
    let rows: Vec<DeliveryLine> = sqlx::query_as(
        "select call_id, kind, state, last_error, filtered_by from deliveries order by call_id, kind",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let after: Vec<_> = rows.iter().filter(|r| r.1 == "after_call").collect();
    assert_eq!(
        after
            .iter()
            .map(|r| (r.0.as_str(), r.2.as_str()))
            .collect::<Vec<_>>(),
        [
            ("a1", "delivered"),
            ("a2", "cancelled"),
            ("a3", "cancelled"),
            ("a4", "delivered")
        ]
    );
    assert_eq!(after[1].3.as_deref(), Some("filtered"));
    assert_eq!(after[1].4.as_ref().unwrap()["field"], "duration");
    assert_eq!(after[2].4.as_ref().unwrap()["field"], "status");
    assert!(
        rows.iter()
            .filter(|r| r.1 == "during_call")
            .all(|r| r.2 == "delivered"),
        "every during-call webhook went: {rows:?}"
    );
    // The receiver got exactly the six delivered ones.
    let mut got = Vec::new();
    for _ in 0..6 {
        let r = rx.next(WAIT).await;
        got.push((r.json()["id"].as_str().unwrap().to_owned(), r.path));
    }
    got.sort();
    assert_eq!(
        got.iter()
            .filter(|(_, p)| p == "/after")
            .map(|(i, _)| i.as_str())
            .collect::<Vec<_>>(),
        ["a1", "a4"]
    );
    // The API says why, and which condition.
    let (_, listed) = app
        .admin_get("/api/v1/deliveries?call_id=a2&kind=after_call")
        .await;
    let d = &listed["items"][0];
    assert_eq!(
        (d["state"].as_str(), d["last_error"].as_str()),
        (Some("cancelled"), Some("filtered"))
    );
    assert_eq!(
        d["filtered_by"],
        json!({"field": "duration", "op": "gte", "value": 10})
    );
    let (_, listed) = app
        .admin_get("/api/v1/deliveries?call_id=a1&kind=after_call")
        .await;
    assert!(
        listed["items"][0].get("filtered_by").is_none(),
        "absent unless filtered"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn first_call_and_a_during_call_marker_condition_decide_the_during_call_webhook(
    pool: PgPool,
) {
    let rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    app.create_scenario(json!({
        "name": "New callers from vk", "numbers": ["78005552233"],
        "during_call_url": rx.url("/during"),
        "during_call_filter": [{"field": "first_call", "op": "eq", "value": true},
                               {"field": "marker", "op": "prefix", "value": "vk"}],
    }))
    .await;
    // The page's call carries marker vk_new. The same caller twice; another once.
    call(&app, "f1", "79990000001", None).await;
    settled(&pool, 1).await;
    call(&app, "f2", "79990000001", None).await;
    call(&app, "f3", "79990000002", None).await;
    settled(&pool, 3).await;
    let rows: Vec<(String, String, Option<Value>)> =
        sqlx::query_as("select call_id, state, filtered_by from deliveries order by call_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows[0].1, "delivered", "{rows:?}");
    assert_eq!(
        (
            rows[1].1.as_str(),
            rows[1].2.as_ref().map(|c| c["field"].clone())
        ),
        ("cancelled", Some(json!("first_call"))),
        "the caller's second call is not a first call"
    );
    assert_eq!(rows[2].1, "delivered", "another caller's first call");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn bad_conditions_are_422_naming_the_condition(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (filter_field, condition, field, code) in [
        (
            "after_call_filter",
            json!({"field": "duration", "op": "gte", "value": "10"}),
            "after_call_filter[0].value",
            "invalid_value",
        ),
        (
            "after_call_filter",
            json!({"field": "nope", "op": "eq", "value": "x"}),
            "after_call_filter[0].field",
            "unknown_field",
        ),
        (
            "after_call_filter",
            json!({"field": "marker", "op": "like", "value": "x"}),
            "after_call_filter[0].op",
            "invalid_op",
        ),
        (
            "during_call_filter",
            json!({"field": "status", "op": "eq", "value": "ANSWER"}),
            "during_call_filter[0].field",
            "not_known_at_start",
        ),
        (
            "during_call_filter",
            json!({"field": "duration", "op": "lte", "value": 3}),
            "during_call_filter[0].field",
            "not_known_at_start",
        ),
        (
            "after_call_filter",
            json!({"field": "marker", "op": "in", "value": "vk"}),
            "after_call_filter[0].value",
            "invalid_value",
        ),
        (
            "after_call_filter",
            json!({"field": "marker", "op": "absent", "value": "vk"}),
            "after_call_filter[0].value",
            "invalid_value",
        ),
        (
            "after_call_filter",
            json!({"field": "first_call", "op": "eq", "value": 1}),
            "after_call_filter[0].value",
            "invalid_value",
        ),
    ] {
        let (status, e) = app
            .admin_post(
                "/api/v1/scenarios",
                &json!({"name": "s", filter_field: [condition]}),
            )
            .await;
        assert_eq!(status.as_u16(), 422, "{condition}: {e}");
        assert_eq!(
            (e["error"]["field"].as_str(), e["error"]["code"].as_str()),
            (Some(field), Some(code)),
            "{condition}"
        );
    }
}

/// A scenario without conditions answers as it always did: no new keys.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_scenario_without_conditions_answers_as_before(pool: PgPool) {
    let app = spawn_app(pool).await;
    let s = app
        .create_scenario(json!({"name": "Plain", "numbers": ["78005552233"]}))
        .await;
    for key in ["during_call_filter", "after_call_filter"] {
        assert!(s.get(key).is_none(), "{key} in {s}");
    }
}
