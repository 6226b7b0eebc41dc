//! Delivery rules: each webhook's conditions on the call, and the headers
//! it carries.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;
use crate::process::database_url_of;

const WAIT: Duration = Duration::from_secs(20);

/// call id, kind, state, last error, filtered by.
type DeliveryLine = (String, String, String, Option<String>, Option<Value>);

/// Reports call `id` from `caller` to 78005552233; ended with (status,
/// duration) when given.
pub(crate) async fn call(app: &TestApp, id: &str, caller: &str, end: Option<(&str, i64)>) {
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
    // The dry run of the same conditions says what sending did.
    let id = s["id"].as_str().unwrap();
    let preview_of = |body: Value| {
        let (app, path) = (&app, format!("/api/v1/scenarios/{id}/filter-preview"));
        async move { app.admin_post(&path, &body).await }
    };
    let (status, preview) = preview_of(json!({"after_call_filter": filter})).await;
    assert_eq!(status.as_u16(), 200, "{preview}");
    assert_eq!(preview["calls"], 4);
    let counts = |o: &Value| (o["sent"].as_u64(), o["filtered"].as_u64());
    assert_eq!(counts(&preview["during_call"]), (Some(4), Some(0)));
    assert_eq!(counts(&preview["after_call"]), (Some(2), Some(2)));
    let mut sent: Vec<&str> = preview["after_call"]["sent_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    sent.sort_unstable();
    assert_eq!(sent, ["a1", "a4"]);
    let (status, e) =
        preview_of(json!({"during_call_filter": [{"field": "duration", "op": "gte", "value": 1}]}))
            .await;
    assert_eq!(status.as_u16(), 422);
    assert_eq!(e["error"]["field"], "during_call_filter[0].field");
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
    // The dry run agrees, first_call included.
    let id: String = sqlx::query_scalar("select id::text from scenarios")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (status, preview) = app
        .admin_post(
            &format!("/api/v1/scenarios/{id}/filter-preview"),
            &json!({"during_call_filter": [{"field": "first_call", "op": "eq", "value": true},
                                           {"field": "marker", "op": "prefix", "value": "vk"}]}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{preview}");
    assert_eq!(
        (
            preview["during_call"]["sent"].as_u64(),
            preview["during_call"]["filtered"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(preview["during_call"]["filtered_calls"], json!(["f2"]));
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
    for key in [
        "during_call_filter",
        "after_call_filter",
        "during_call_headers",
        "after_call_headers",
    ] {
        assert!(s.get(key).is_none(), "{key} in {s}");
    }
}

/// Issue 26's acceptance, end to end against a real server with a sealing
/// key: answered calls over ten seconds get the after-call webhook, which
/// carries a secret `Authorization` header; the header's value is nowhere
/// in the `scenarios` row, the API's answers, the audit log or the log; a
/// GET → PUT round trip (its value null) keeps it.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_secret_header_goes_with_the_filtered_after_call_webhooks_and_is_never_shown(
    pool: PgPool,
) {
    use base64::Engine as _;
    const TOKEN: &str = "Bearer crm-key-5d41402abc4b2a76";
    let key = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
    let log = std::env::temp_dir().join(format!("callhook-headers-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut rx = Receiver::ok().await;
    let server = crate::process::ServerProcess::start_logging(
        &database_url_of(&pool),
        &[("CALLHOOK_SECRET_KEY", key.as_str()), ("RUST_LOG", "debug")],
        &log,
    )
    .await;
    let http = reqwest::Client::new();
    let settings = json!({
        "name": "CRM", "numbers": ["78005552233"],
        "during_call_url": rx.url("/during"), "after_call_url": rx.url("/after"),
        "after_call_filter": [{"field": "status", "op": "in", "value": ["ANSWER"]},
                              {"field": "duration", "op": "gte", "value": 10}],
        "after_call_headers": [{"name": "Authorization", "value": TOKEN, "secret": true},
                               {"name": "X-Api-Version", "value": "2"}],
    });
    let (status, created) = server
        .post(&http, "/api/v1/scenarios", ADMIN, &settings)
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["after_call_headers"],
        json!([{"name": "Authorization", "value": null, "secret": true},
               {"name": "X-Api-Version", "value": "2", "secret": false}])
    );
    // What GET answers can be PUT back: the secret's value is kept.
    let get = |path: String| {
        let (http, url) = (http.clone(), server.url(&path));
        async move {
            let v: Value = http
                .get(url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    let shown = get(format!("/api/v1/scenarios/{id}")).await;
    let put = http
        .put(server.url(&format!("/api/v1/scenarios/{id}")))
        .bearer_auth(ADMIN)
        .json(&shown)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    for (call_id, status, duration) in [
        ("h1", "ANSWER", 20),
        ("h2", "ANSWER", 5),
        ("h3", "BUSY", 0),
        ("h4", "ANSWER", 30),
    ] {
        let mut c = page_call(call_id);
        c["callee"] = json!("78005552233");
        let (s, body) = server.post(&http, "/api/v1/calls", INGEST, &c).await;
        assert_eq!(s, 202, "{body}");
        let (s, body) = server
            .post(
                &http,
                &format!("/api/v1/calls/{call_id}/end"),
                INGEST,
                &json!({"status": status, "duration": duration}),
            )
            .await;
        assert_eq!(s, 202, "{body}");
    }
    settled(&pool, 8).await;
    let mut after = Vec::new();
    for _ in 0..6 {
        let r = rx.next(WAIT).await;
        if r.path == "/after" {
            assert_eq!(r.header("authorization"), TOKEN);
            assert_eq!(r.header("x-api-version"), "2");
            after.push(r.json()["id"].as_str().unwrap().to_owned());
        } else {
            assert!(
                r.headers.get("authorization").is_none(),
                "only the after-call webhook has it"
            );
        }
    }
    after.sort();
    assert_eq!(after, ["h1", "h4"]);
    let filtered: i64 = sqlx::query_scalar(
        "select count(*) from deliveries where state = 'cancelled' and last_error = 'filtered'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(filtered, 2);

    // The value is nowhere: the row, the answers, the audit log, the log.
    let secret = "crm-key-5d41402abc4b2a76";
    let row: String = sqlx::query_scalar("select row_to_json(s)::text from scenarios s")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!row.contains(secret) && row.contains("enc:v2:"), "{row}");
    for path in [
        format!("/api/v1/scenarios/{id}"),
        "/api/v1/scenarios".to_owned(),
        format!("/api/v1/audit-log?scenario_id={id}"),
        "/api/v1/deliveries?call_id=h1".to_owned(),
    ] {
        let text = get(path.clone()).await.to_string();
        assert!(!text.contains(secret), "{path}: {text}");
    }
    // A test send carries it, and answers it masked.
    let (s, tested) = server
        .post(
            &http,
            &format!("/api/v1/scenarios/{id}/test"),
            ADMIN,
            &json!({"kind": "after_call"}),
        )
        .await;
    assert_eq!(s, 200, "{tested}");
    assert_eq!(rx.next(WAIT).await.header("authorization"), TOKEN);
    assert!(!tested.to_string().contains(secret), "{tested}");
    let audit: String = sqlx::query_scalar(
        "select coalesce(string_agg(row_to_json(a)::text, ''), '') from audit_log a",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!audit.contains(secret), "{audit}");
    server.kill().await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(secret), "the log holds the header's value");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn bad_headers_are_422_naming_the_header(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (header, field, code) in [
        (
            json!({"name": "Content-Type", "value": "text/plain"}),
            "after_call_headers[0].name",
            "reserved_header",
        ),
        (
            json!({"name": "webhook-id", "value": "x"}),
            "after_call_headers[0].name",
            "reserved_header",
        ),
        (
            json!({"name": "X Key", "value": "x"}),
            "after_call_headers[0].name",
            "invalid_header",
        ),
        (
            json!({"name": "X-Key", "value": "a\r\nHost: evil"}),
            "after_call_headers[0].value",
            "invalid_header",
        ),
        (
            json!({"name": "X-Key", "value": null}),
            "after_call_headers[0].value",
            "required",
        ),
        (
            json!({"name": "X-Key", "value": null, "secret": true}),
            "after_call_headers[0].value",
            "required",
        ),
    ] {
        let (status, e) = app
            .admin_post(
                "/api/v1/scenarios",
                &json!({"name": "s", "after_call_headers": [header]}),
            )
            .await;
        assert_eq!(status.as_u16(), 422, "{header}: {e}");
        assert_eq!(
            (e["error"]["field"].as_str(), e["error"]["code"].as_str()),
            (Some(field), Some(code)),
            "{header}"
        );
    }
}
