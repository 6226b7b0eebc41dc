use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("<none>")
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn admin_routes_need_the_admin_token(pool: PgPool) {
    let app = spawn_app(pool).await;
    for token in [None, Some("wrong"), Some(INGEST)] {
        let (status, body) = app
            .raw(reqwest::Method::GET, "/api/v1/scenarios", token, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let (status, _) = app.admin_get("/api/v1/scenarios").await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn create_with_only_a_name_uses_defaults(pool: PgPool) {
    let app = spawn_app(pool).await;
    let s = app.create_scenario(json!({"name": "Main"})).await;
    assert_eq!(s["name"], "Main");
    assert_eq!(s["during_call_url"], Value::Null);
    assert_eq!(s["after_call_url"], Value::Null);
    assert_eq!(s["custom_fields"], json!([]));
    assert_eq!(s["numbers"], json!([]));
    assert_eq!(s["timezone"], "Europe/Moscow");
    let secret = s["signing_secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(callhook_core::SigningSecret::parse(secret).is_ok());
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn create_save_get_round_trip_returns_what_was_saved(pool: PgPool) {
    let app = spawn_app(pool).await;
    let created = app
        .create_scenario(json!({"name": "Main", "numbers": ["+7 (800) 555-22-33"]}))
        .await;
    let id = created["id"].as_str().unwrap();

    // Edit what GET returned and send it back whole.
    let (_, mut edited) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    edited["name"] = json!("Renamed");
    edited["during_call_url"] = json!("https://crm.example.com/during");
    edited["after_call_url"] = json!("https://crm.example.com/after?x=1");
    edited["custom_fields"] =
        json!([{"name": "source", "value": "{utm_source}"}, {"name": "fixed", "value": "42"}]);
    edited["numbers"] = json!(["78005552233", "8 (495) 123-45-67"]);
    edited["timezone"] = json!("Asia/Yekaterinburg");
    let (status, saved) = app
        .admin_put(&format!("/api/v1/scenarios/{id}"), &edited)
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");

    let (status, got) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, saved);
    assert_eq!(got["name"], "Renamed");
    assert_eq!(got["during_call_url"], "https://crm.example.com/during");
    assert_eq!(got["after_call_url"], "https://crm.example.com/after?x=1");
    assert_eq!(got["custom_fields"], edited["custom_fields"]);
    assert_eq!(got["numbers"], json!(["78005552233", "84951234567"]));
    assert_eq!(got["timezone"], "Asia/Yekaterinburg");
    assert_eq!(
        got["signing_secret"], created["signing_secret"],
        "the secret survives a save"
    );
    assert_eq!(got["created_at"], created["created_at"]);

    let (status, list) = app.admin_get("/api/v1/scenarios").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([got]));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn empty_url_means_no_webhook(pool: PgPool) {
    let app = spawn_app(pool).await;
    let s = app
        .create_scenario(
            json!({"name": "x", "during_call_url": "", "after_call_url": "https://a.example/"}),
        )
        .await;
    assert_eq!(s["during_call_url"], Value::Null);
    let id = s["id"].as_str().unwrap();
    let (status, s) = app
        .admin_put(
            &format!("/api/v1/scenarios/{id}"),
            &json!({"name": "x", "after_call_url": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s["after_call_url"], Value::Null);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn invalid_settings_are_422_naming_the_field(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let long_url = format!("https://example.com/{}", "a".repeat(2040));
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"name": format!("f{i}"), "value": ""}))
        .collect();
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "name", "required"),
        (json!({"name": "  "}), "name", "required"),
        (json!({"name": 5}), "name", "invalid_type"),
        (
            json!({"name": "x", "during_call_url": "/relative"}),
            "during_call_url",
            "invalid_url",
        ),
        (
            json!({"name": "x", "after_call_url": "ftp://example.com/"}),
            "after_call_url",
            "invalid_url",
        ),
        (
            json!({"name": "x", "after_call_url": "https://exa mple.com/"}),
            "after_call_url",
            "invalid_url",
        ),
        (
            json!({"name": "x", "after_call_url": long_url}),
            "after_call_url",
            "invalid_url",
        ),
        (
            json!({"name": "x", "after_call_url": "https://u:p@example.com/"}),
            "after_call_url",
            "invalid_url",
        ),
        (
            json!({"name": "x", "custom_fields": [{"name": "", "value": "1"}]}),
            "custom_fields[0].name",
            "required",
        ),
        (
            json!({"name": "x", "custom_fields": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]}),
            "custom_fields[1].name",
            "duplicate",
        ),
        (
            json!({"name": "x", "custom_fields": many}),
            "custom_fields",
            "too_many",
        ),
        (
            json!({"name": "x", "custom_fields": [{"name": "a", "value": "x".repeat(1025)}]}),
            "custom_fields[0].value",
            "too_long",
        ),
        (
            json!({"name": "x", "custom_fields": [{"name": "a", "value": "{nope}"}]}),
            "custom_fields[0].value",
            "unknown_placeholder",
        ),
        (
            json!({"name": "x", "custom_fields": [{"name": "a"}]}),
            "custom_fields[0].value",
            "required",
        ),
        (
            json!({"name": "x", "numbers": ["12345"]}),
            "numbers[0]",
            "invalid_phone",
        ),
        (
            json!({"name": "x", "numbers": ["78005552233", "1234567890123456"]}),
            "numbers[1]",
            "invalid_phone",
        ),
        (
            json!({"name": "x", "numbers": ["7800555223x"]}),
            "numbers[0]",
            "invalid_phone",
        ),
        (
            json!({"name": "x", "timezone": "Mars/Olympus"}),
            "timezone",
            "invalid_timezone",
        ),
        (
            json!({"name": "x", "colour": "red"}),
            "colour",
            "unknown_field",
        ),
    ];
    for (body, want_field, want_code) in cases {
        let (status, err) = app.admin_post("/api/v1/scenarios", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {err}");
        assert_eq!(field(&err), want_field, "{body} -> {err}");
        assert_eq!(err["error"]["code"], want_code, "{body} -> {err}");
        assert!(!err["error"]["message"].as_str().unwrap().is_empty());
    }
    let count: i64 = sqlx::query_scalar("select count(*) from scenarios")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing written");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn malformed_json_is_400(pool: PgPool) {
    let app = spawn_app(pool).await;
    let resp = app
        .http
        .post(app.url("/api/v1/scenarios"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    assert_eq!(body["error"]["field"], Value::Null);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_number_owned_by_another_scenario_is_409_naming_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let first = app
        .create_scenario(json!({"name": "a", "numbers": ["78005552233"]}))
        .await;
    let (status, err) = app
        .admin_post(
            "/api/v1/scenarios",
            &json!({"name": "b", "numbers": ["+7 800 555 22 33"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(field(&err), "numbers");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("78005552233"), "{message}");
    assert!(message.contains(first["id"].as_str().unwrap()), "{message}");
    let (_, list) = app.admin_get("/api/v1/scenarios").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "the refused scenario was not created"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn unknown_scenario_is_404_and_delete_removes(pool: PgPool) {
    let app = spawn_app(pool).await;
    let missing = "0194f9a0-0000-7000-8000-000000000000";
    let path = format!("/api/v1/scenarios/{missing}");
    assert_eq!(app.admin_get(&path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.admin_put(&path, &json!({"name": "x"})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.admin_delete(&path).await.0, StatusCode::NOT_FOUND);
    let (status, err) = app.admin_get("/api/v1/scenarios/not-a-uuid").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["field"], "id");

    let s = app
        .create_scenario(json!({"name": "x", "numbers": ["78005552233"]}))
        .await;
    let path = format!("/api/v1/scenarios/{}", s["id"].as_str().unwrap());
    assert_eq!(app.admin_delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.admin_get(&path).await.0, StatusCode::NOT_FOUND);
    // Its number is free again.
    app.create_scenario(json!({"name": "y", "numbers": ["78005552233"]}))
        .await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn service_endpoints_answer_without_a_token(pool: PgPool) {
    let app = spawn_app(pool).await;
    for path in ["/healthz", "/readyz"] {
        let (status, body) = app.raw(reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body["status"], "ok");
    }
    let (status, doc) = app
        .raw(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/scenarios",
        "/api/v1/scenarios/{id}",
        "/api/v1/calls",
        "/api/v1/calls/{id}/end",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    eventually(
        std::time::Duration::from_secs(10),
        "the gauges' first reading",
        || async {
            app.metrics()
                .await
                .contains("callhook_pending_deliveries")
                .then_some(())
        },
    )
    .await;
    let (status, err) = app.raw(reqwest::Method::GET, "/nope", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "not_found");
}
