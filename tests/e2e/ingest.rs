use axum::http::StatusCode;
use callhook::Role;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

/// The API alone: deliveries stay pending, so their rows can be inspected.
async fn api_only(pool: PgPool) -> TestApp {
    spawn_app_with(pool, |c| c.role = Role::Api).await
}

fn golden_bytes(name: &str) -> String {
    let text = std::fs::read_to_string(format!(
        "{}/tests/golden/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    serde_json::to_string(&value).unwrap()
}

async fn counts(pool: &PgPool) -> (i64, i64) {
    let calls: i64 = sqlx::query_scalar("select count(*) from calls")
        .fetch_one(pool)
        .await
        .unwrap();
    let deliveries: i64 = sqlx::query_scalar("select count(*) from deliveries")
        .fetch_one(pool)
        .await
        .unwrap();
    (calls, deliveries)
}

async fn scenario(app: &TestApp, during: bool, after: bool) -> Value {
    app.create_scenario(json!({
        "name": "Main",
        "numbers": ["78005552233"],
        "during_call_url": if during { "https://crm.example.com/during" } else { "" },
        "after_call_url": if after { "https://crm.example.com/after" } else { "" },
    }))
    .await
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn start_and_end_store_the_page_payloads_byte_for_byte(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, true).await;

    let (status, started) = app.ingest_post("/api/v1/calls", &page_call("313")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["call_id"], "313");
    assert_eq!(started["deliveries"][0]["kind"], "during_call");
    assert_eq!(started["deliveries"][0]["state"], "pending");

    let (status, ended) = app
        .ingest_post(
            "/api/v1/calls/313/end",
            &json!({"status": "ANSWER", "duration": 20, "link": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ended}");
    assert_eq!(ended["deliveries"][0]["kind"], "after_call");

    let rows = deliveries(&pool).await;
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|d| d.state == "pending" && d.call_id == "313"));
    let during = rows.iter().find(|d| d.kind == "during_call").unwrap();
    let after = rows.iter().find(|d| d.kind == "after_call").unwrap();
    assert_eq!(during.payload, golden_bytes("page_during_call.json"));
    assert_eq!(after.payload, golden_bytes("page_after_call.json"));
    assert_eq!(
        during.id.to_string(),
        started["deliveries"][0]["id"].as_str().unwrap()
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn one_url_queues_one_delivery_and_none_queues_none(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    let s = scenario(&app, false, true).await;
    let (status, started) = app.ingest_post("/api/v1/calls", &page_call("1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(started["deliveries"], json!([]));
    let (_, ended) = app
        .ingest_post(
            "/api/v1/calls/1/end",
            &json!({"status": "BUSY", "duration": 0}),
        )
        .await;
    assert_eq!(ended["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(counts(&pool).await, (1, 1));

    let id = s["id"].as_str().unwrap();
    app.admin_put(
        &format!("/api/v1/scenarios/{id}"),
        &json!({"name": "off", "numbers": ["78005552233"]}),
    )
    .await;
    let (status, started) = app.ingest_post("/api/v1/calls", &page_call("2")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(started["deliveries"], json!([]));
    let (status, ended) = app
        .ingest_post(
            "/api/v1/calls/2/end",
            &json!({"status": "BUSY", "duration": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(ended["deliveries"], json!([]));
    assert_eq!(counts(&pool).await, (2, 1));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn twenty_parallel_identical_starts_make_one_call_and_one_delivery(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, true).await;
    let body = page_call("777");
    let results =
        futures::future::join_all((0..20).map(|_| app.ingest_post("/api/v1/calls", &body))).await;
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    let repeated = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!((created, repeated), (1, 19), "{results:?}");
    let first_ids: Vec<_> = results
        .iter()
        .map(|(_, b)| b["deliveries"].clone())
        .collect();
    assert!(
        first_ids.windows(2).all(|w| w[0] == w[1]),
        "every answer names the same delivery"
    );
    assert_eq!(counts(&pool).await, (1, 1));

    let end = json!({"status": "ANSWER", "duration": 5});
    let results =
        futures::future::join_all((0..20).map(|_| app.ingest_post("/api/v1/calls/777/end", &end)))
            .await;
    assert_eq!(
        results
            .iter()
            .filter(|(s, _)| *s == StatusCode::ACCEPTED)
            .count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|(s, _)| *s == StatusCode::OK).count(),
        19
    );
    assert_eq!(counts(&pool).await, (1, 2));
}

/// Concurrent single starts share transactions (group commit); each request
/// still gets its own answer, and a refused one costs its neighbours nothing.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn concurrent_starts_each_get_their_own_answer(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, false).await;
    start_call(&app, "taken").await;
    let mut bodies = Vec::new();
    for i in 0..40 {
        bodies.push((StatusCode::ACCEPTED, page_call(&format!("c{i}"))));
    }
    for i in 0..10 {
        let mut unknown = page_call(&format!("u{i}"));
        unknown["callee"] = json!("70000000000");
        bodies.push((StatusCode::UNPROCESSABLE_ENTITY, unknown));
        let mut conflicting = page_call("taken");
        conflicting["caller"] = json!(format!("7999000000{i}"));
        bodies.push((StatusCode::CONFLICT, conflicting));
    }
    let answers = futures::future::join_all(
        bodies
            .iter()
            .map(|(_, body)| app.ingest_post("/api/v1/calls", body)),
    )
    .await;
    for ((expected, sent), (status, answer)) in bodies.iter().zip(&answers) {
        assert_eq!(status, expected, "{sent} → {answer}");
        match *expected {
            StatusCode::ACCEPTED => {
                assert_eq!(answer["call_id"], sent["id"]);
                let delivery = answer["deliveries"][0]["id"].as_str().unwrap();
                let call_id: String =
                    sqlx::query_scalar("select call_id from deliveries where id = $1::uuid")
                        .bind(delivery)
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                assert_eq!(call_id, sent["id"].as_str().unwrap());
            }
            StatusCode::UNPROCESSABLE_ENTITY => assert_eq!(answer["error"]["field"], "callee"),
            _ => assert_eq!(answer["error"]["field"], "id"),
        }
    }
    assert_eq!(counts(&pool).await, (41, 41));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_conflicting_repeat_is_409_and_changes_nothing(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, true).await;
    app.ingest_post("/api/v1/calls", &page_call("9")).await;
    let mut other = page_call("9");
    other["caller"] = json!("79990000000");
    let (status, err) = app.ingest_post("/api/v1/calls", &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["error"]["field"], "id");
    let caller: String = sqlx::query_scalar("select caller from calls where id = '9'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(caller, "79990009911");

    app.ingest_post(
        "/api/v1/calls/9/end",
        &json!({"status": "ANSWER", "duration": 5}),
    )
    .await;
    let (status, _) = app
        .ingest_post(
            "/api/v1/calls/9/end",
            &json!({"status": "ANSWER", "duration": 6}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let duration: i32 = sqlx::query_scalar("select duration from calls where id = '9'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(duration, 5);
    assert_eq!(counts(&pool).await, (1, 2));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn bad_start_events_are_rejected_naming_the_field_and_write_nothing(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, true).await;
    let with = |k: &str, v: Value| {
        let mut b = page_call("42");
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    let cases = vec![
        (with("id", Value::Null), 422, "id"),
        (with("id", json!("")), 422, "id"),
        (with("id", json!(42)), 422, "id"),
        (with("caller", Value::Null), 422, "caller"),
        (with("caller", json!("123")), 422, "caller"),
        (with("callee", json!("+7 (800) 555-22-3x")), 422, "callee"),
        (with("callee", json!("78005550000")), 422, "callee"),
        (
            with("scenario_id", json!("0194f9a0-0000-7000-8000-000000000000")),
            422,
            "scenario_id",
        ),
        (with("scenario_id", json!("nope")), 422, "scenario_id"),
        (with("date", json!("19.02.2019")), 422, "date"),
        (with("order_id", json!("123")), 422, "order_id"),
        (with("order_id", json!(1.5)), 422, "order_id"),
        (with("ip", json!("999.0.0.1")), 422, "ip"),
        (with("visit_id", json!(123456)), 422, "visit_id"),
        (
            with("landing_page", json!("x".repeat(2049))),
            422,
            "landing_page",
        ),
        (with("colour", json!("red")), 422, "colour"),
    ];
    for (body, status, field) in cases {
        let (got, err) = app.ingest_post("/api/v1/calls", &body).await;
        assert_eq!(got.as_u16(), status, "{body} -> {err}");
        assert_eq!(err["error"]["field"], field, "{body} -> {err}");
    }
    let (_, err) = app
        .ingest_post("/api/v1/calls", &with("callee", json!("78005550000")))
        .await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("78005550000"),
        "{err}"
    );
    assert_eq!(counts(&pool).await, (0, 0), "nothing written");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn bad_end_events_are_rejected_naming_the_field(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, true).await;
    app.ingest_post("/api/v1/calls", &page_call("5")).await;
    let cases = vec![
        (json!({"duration": 1}), 422, "status"),
        (json!({"status": "ANSWERED", "duration": 1}), 422, "status"),
        (json!({"status": "ANSWER"}), 422, "duration"),
        (json!({"status": "ANSWER", "duration": -1}), 422, "duration"),
        (
            json!({"status": "ANSWER", "duration": 1.5}),
            422,
            "duration",
        ),
        (
            json!({"status": "ANSWER", "duration": "20"}),
            422,
            "duration",
        ),
        (
            json!({"status": "ANSWER", "duration": 1, "ended_at": "yesterday"}),
            422,
            "ended_at",
        ),
        (
            json!({"status": "ANSWER", "duration": 1, "extra": true}),
            422,
            "extra",
        ),
    ];
    for (body, status, field) in cases {
        let (got, err) = app.ingest_post("/api/v1/calls/5/end", &body).await;
        assert_eq!(got.as_u16(), status, "{body} -> {err}");
        assert_eq!(err["error"]["field"], field, "{body} -> {err}");
    }
    assert_eq!(
        counts(&pool).await,
        (1, 1),
        "no after-call delivery written"
    );
    let status: Option<String> = sqlx::query_scalar("select status from calls")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, None);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn acrive_is_accepted_as_active(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, false, true).await;
    app.ingest_post("/api/v1/calls", &page_call("8")).await;
    let (status, _) = app
        .ingest_post(
            "/api/v1/calls/8/end",
            &json!({"status": "ACRIVE", "duration": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let payload: String = sqlx::query_scalar("select payload from deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(payload.contains(r#""status":"ACTIVE""#), "{payload}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn ending_an_unknown_call_needs_caller_and_callee(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, true).await;
    let (status, err) = app
        .ingest_post(
            "/api/v1/calls/404/end",
            &json!({"status": "BUSY", "duration": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("caller and callee"));

    let (status, ended) = app
        .ingest_post(
            "/api/v1/calls/404/end",
            &json!({"status": "BUSY", "duration": 0, "caller": "79990009911", "callee": "78005552233"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ended}");
    let rows = deliveries(&pool).await;
    assert_eq!(
        rows.len(),
        1,
        "no during-call webhook for a call never started"
    );
    assert_eq!(rows[0].kind, "after_call");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn bodies_over_64_kib_are_413_and_malformed_json_400(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, true).await;
    let mut big = page_call("big");
    big["referrer"] = json!("x".repeat(70 * 1024));
    let (status, err) = app.ingest_post("/api/v1/calls", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["error"]["code"], "body_too_large");

    let resp = app
        .http
        .post(app.url("/api/v1/calls"))
        .bearer_auth(INGEST)
        .body("{\"id\": \"1\",")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(counts(&pool).await, (0, 0));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn ingest_and_admin_tokens_do_not_cross(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    let (status, _) = app
        .raw(
            reqwest::Method::POST,
            "/api/v1/calls",
            Some(ADMIN),
            Some(&page_call("1")),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .raw(
            reqwest::Method::GET,
            "/api/v1/scenarios",
            Some(INGEST),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn custom_fields_and_timezone_shape_the_payload(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    app.create_scenario(json!({
        "name": "Main",
        "numbers": ["78005552233"],
        "during_call_url": "https://crm.example.com/during",
        "timezone": "Asia/Yekaterinburg",
        "custom_fields": [{"name": "Источник", "value": "{utm_source}/{marker}"}, {"name": "x", "value": "{utm_medium}"}],
    }))
    .await;
    let mut call = page_call("tz");
    call["date"] = json!("2019-02-19T00:00:00+03:00");
    call["utm_source"] = json!("yandex");
    app.ingest_post("/api/v1/calls", &call).await;
    let payload: String = sqlx::query_scalar("select payload from deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        payload.contains(r#""date":"2019-02-19 02:00:00""#),
        "{payload}"
    );
    assert!(
        payload.contains(r#""custom_fields":{"Источник":"yandex/vk_new","x":""}"#),
        "{payload}"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_batch_stores_each_call_as_a_single_start_would(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, true).await;
    app.ingest_post("/api/v1/calls", &page_call("old")).await;
    let mut conflicting = page_call("old");
    conflicting["caller"] = json!("79990000000");
    let mut bad = page_call("bad");
    bad["caller"] = json!("123");
    let body = json!({"calls": [page_call("b1"), page_call("old"), conflicting, bad, page_call("b2"), "nope"]});
    let (status, answer) = app.ingest_post("/api/v1/calls/batch", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results = answer["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![202, 200, 409, 422, 202, 422], "{answer}");
    assert_eq!(results[0]["call_id"], "b1");
    assert_eq!(results[0]["deliveries"][0]["kind"], "during_call");
    assert_eq!(results[3]["error"]["field"], "caller");
    assert_eq!(results[5]["error"]["field"], "calls");
    assert_eq!(
        counts(&pool).await,
        (3, 3),
        "old, b1 and b2, each with its during-call delivery"
    );

    // The stored payload is the same as through the single endpoint.
    let single: String = sqlx::query_scalar("select payload from deliveries where call_id = 'old'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let batched: String = sqlx::query_scalar("select payload from deliveries where call_id = 'b1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(batched, single.replace("\"old\"", "\"b1\""));

    // Same batch again: every stored call is a repeat, nothing new.
    let (_, again) = app.ingest_post("/api/v1/calls/batch", &body).await;
    let statuses: Vec<u64> = again["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 200, 409, 422, 200, 422]);
    assert_eq!(counts(&pool).await, (3, 3));

    // One id twice in a batch: the second is a repeat of the first, or a
    // conflict when its data differ; an unknown number names `callee`.
    let mut other = page_call("b3");
    other["caller"] = json!("79990000000");
    let mut unknown = page_call("b4");
    unknown["callee"] = json!("70000000000");
    let body = json!({"calls": [page_call("b3"), page_call("b3"), other, unknown]});
    let (_, answer) = app.ingest_post("/api/v1/calls/batch", &body).await;
    let results = answer["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![202, 200, 409, 422], "{answer}");
    assert_eq!(results[0]["deliveries"], results[1]["deliveries"]);
    assert_eq!(results[3]["error"]["field"], "callee");
    assert_eq!(counts(&pool).await, (4, 4));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_batch_to_many_numbers_finds_each_calls_scenario(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, false).await;
    let other = app
        .create_scenario(json!({"name": "Other", "numbers": ["78005550002", "78005550003"],
            "during_call_url": "https://other.example.com/during", "timezone": "Asia/Yekaterinburg"}))
        .await;
    let to = |id: &str, callee: &str| {
        let mut c = page_call(id);
        c["callee"] = json!(callee);
        c
    };
    let mut by_id = to("n5", "79990000005");
    by_id["scenario_id"] = other["id"].clone();
    let body = json!({"calls": [
        to("n1", "78005552233"), to("n2", "78005550002"), to("n3", "78005559999"),
        to("n4", "78005550003"), by_id, to("n6", "78005552233"),
    ]});
    let (status, answer) = app.ingest_post("/api/v1/calls/batch", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let statuses: Vec<u64> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![202, 202, 422, 202, 202, 202], "{answer}");
    assert_eq!(answer["results"][2]["error"]["code"], "unknown_number");
    let owners: Vec<(String, String)> = sqlx::query_as(
        "select c.id, s.name from calls c join scenarios s on s.id = c.scenario_id order by c.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expect = [
        ("n1", "Main"),
        ("n2", "Other"),
        ("n4", "Other"),
        ("n5", "Other"),
        ("n6", "Main"),
    ];
    assert_eq!(
        owners,
        expect.map(|(c, s)| (c.to_owned(), s.to_owned())).to_vec()
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_batch_must_carry_1_to_1000_calls(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, true).await;
    for body in [
        json!({}),
        json!({"calls": []}),
        json!({"calls": "x"}),
        json!({"calls": [page_call("1")], "x": 1}),
    ] {
        let (status, err) = app.ingest_post("/api/v1/calls/batch", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {err}");
        assert!(
            matches!(err["error"]["field"].as_str(), Some("calls" | "x")),
            "{err}"
        );
    }
    let many: Vec<Value> = (0..1001).map(|i| page_call(&format!("c{i}"))).collect();
    let (status, err) = app
        .ingest_post("/api/v1/calls/batch", &json!({"calls": many}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(counts(&pool).await, (0, 0));
}

/// More batches than the server takes at once (4) wait their turn: every
/// one is answered and stored.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn concurrent_batches_beyond_the_limit_all_get_stored(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    scenario(&app, true, false).await;
    let bodies: Vec<Value> = (0..10)
        .map(|b| json!({"calls": (0..20).map(|i| page_call(&format!("b{b}-{i}"))).collect::<Vec<_>>()}))
        .collect();
    futures::future::join_all(bodies.iter().map(|body| app.store_batch(body))).await;
    assert_eq!(counts(&pool).await, (200, 200));
}
