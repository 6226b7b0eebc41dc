//! Visits and number pools: reservations, and calls attributed from them.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;
use callhook::Role;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

/// The API alone, with this reservation hold.
async fn api_with_hold(pool: PgPool, hold: Duration) -> TestApp {
    spawn_app_with(pool, move |c| {
        c.role = Role::Api;
        c.reservation_hold = hold;
    })
    .await
}

async fn pool_scenario(app: &TestApp, numbers: &[&str]) -> String {
    let s = app
        .create_scenario(json!({"name": "Pool", "numbers": numbers}))
        .await;
    s["id"].as_str().unwrap().to_owned()
}

async fn visit(app: &TestApp, scenario_id: &str, visit_id: &str) -> Value {
    let (status, v) = app
        .ingest_post(
            "/api/v1/visits",
            &json!({"scenario_id": scenario_id, "visit_id": visit_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

async fn pool_of(app: &TestApp, scenario_id: &str) -> Value {
    let (status, v) = app
        .admin_get(&format!("/api/v1/scenarios/{scenario_id}/pool"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// The call's visit fields as stored.
async fn stored_visit(pool: &PgPool, call_id: &str) -> (Option<String>, Option<String>) {
    sqlx::query_as("select visit_id, marker from calls where id = $1")
        .bind(call_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Now, to the second (call dates have no fractions).
fn now_secs() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_third_visit_on_a_two_number_pool_is_shared_and_counted(pool: PgPool) {
    let app = api_with_hold(pool, Duration::from_secs(150)).await;
    let id = pool_scenario(&app, &["79000000001", "79000000002"]).await;

    let a = visit(&app, &id, "a").await;
    let b = visit(&app, &id, "b").await;
    assert_eq!(
        (a["shared"].clone(), b["shared"].clone()),
        (json!(false), json!(false))
    );
    assert_ne!(a["number"], b["number"]);

    let c = visit(&app, &id, "c").await;
    assert_eq!(c["shared"], true, "{c}");
    // The number whose reservation is oldest: a's.
    assert_eq!(c["number"], a["number"]);

    let p = pool_of(&app, &id).await;
    assert_eq!(
        (
            &p["size"],
            &p["reserved_now"],
            &p["free_now"],
            &p["shared_today"]
        ),
        (&json!(2), &json!(2), &json!(0), &json!(1)),
        "{p}"
    );
    let shared_number = p["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["number"] == a["number"])
        .unwrap();
    // The latest reservation of a shared number is the one shown (and wins calls).
    assert_eq!(shared_number["state"], "reserved");
    assert_eq!(shared_number["visit_id"], "c");
    assert_eq!(shared_number["shared"], true);

    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("callhook_pool_shared_reservations_total") && l.contains(&id)),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_heartbeat_keeps_the_number_and_extends_the_reservation(pool: PgPool) {
    let app = api_with_hold(pool, Duration::from_secs(150)).await;
    let id = pool_scenario(&app, &["79000000001", "79000000002"]).await;

    let first = visit(&app, &id, "a").await;
    let other = visit(&app, &id, "b").await;
    assert_ne!(first["number"], other["number"]);
    let again = visit(&app, &id, "a").await;
    assert_eq!(again["number"], first["number"]);
    assert_eq!(again["shared"], false);
    let until = |v: &Value| {
        v["reserved_until"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    assert!(until(&again) >= until(&first), "{first} then {again}");
    // Still two numbers, two visits: nobody shares.
    assert_eq!(pool_of(&app, &id).await["shared_today"], 0);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn after_the_hold_time_the_number_returns_to_the_pool(pool: PgPool) {
    let app = api_with_hold(pool, Duration::from_secs(1)).await;
    let id = pool_scenario(&app, &["79000000001"]).await;

    let a = visit(&app, &id, "a").await;
    assert_eq!(a["shared"], false);
    assert_eq!(visit(&app, &id, "b").await["shared"], true);

    eventually(
        Duration::from_secs(10),
        "the number to be free again",
        || async {
            let p = pool_of(&app, &id).await;
            (p["numbers"][0]["state"] == "free").then_some(())
        },
    )
    .await;
    let c = visit(&app, &id, "c").await;
    assert_eq!(c["shared"], false, "{c}");
    assert_eq!(c["number"], a["number"]);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_call_to_a_reserved_number_sends_the_visits_fields_in_the_page_format(pool: PgPool) {
    let mut receiver = Receiver::ok().await;
    let app = spawn_app(pool).await;
    let s = app
        .create_scenario(json!({
            "name": "Pool",
            "numbers": ["78005552233"],
            "during_call_url": receiver.url("/during"),
        }))
        .await;
    let id = s["id"].as_str().unwrap();

    // The visit carries the page example's visit fields.
    let mut visit_body = page_call("unused");
    let fields = visit_body.as_object_mut().unwrap();
    for k in ["id", "caller", "callee", "date"] {
        fields.remove(k);
    }
    fields.insert("scenario_id".into(), json!(id));
    let (status, r) = app.ingest_post("/api/v1/visits", &visit_body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["number"], "78005552233");

    // The telephony side knows only who called which number, and when.
    let at = now_secs();
    let (status, v) = app
        .ingest_post(
            "/api/v1/calls",
            &json!({"id": "313", "caller": "79990009911", "callee": "78005552233", "date": rfc3339(at)}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");

    let got = receiver.next(Duration::from_secs(10)).await;
    let golden = std::fs::read_to_string(format!(
        "{}/tests/golden/page_during_call.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut expected: Value = serde_json::from_str(&golden).unwrap();
    // Europe/Moscow is UTC+3 all year.
    expected["date"] = json!((at + chrono::Duration::hours(3))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string());
    assert_eq!(
        std::str::from_utf8(&got.body).unwrap(),
        serde_json::to_string(&expected).unwrap()
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_late_call_event_inside_an_ended_reservation_is_still_attributed(pool: PgPool) {
    let app = api_with_hold(pool.clone(), Duration::from_secs(1)).await;
    let id = pool_scenario(&app, &["79000000001"]).await;

    let (status, r) = app
        .ingest_post(
            "/api/v1/visits",
            &json!({"scenario_id": id, "visit_id": "early", "marker": "vk_new"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let call_time = now_secs();

    // The reservation ends, and later another visit takes the number.
    eventually(
        Duration::from_secs(10),
        "the reservation to end",
        || async {
            let p = pool_of(&app, &id).await;
            (p["numbers"][0]["state"] == "free"
                && Utc::now() >= call_time + chrono::Duration::seconds(2))
            .then_some(())
        },
    )
    .await;
    visit(&app, &id, "later").await;

    // Only now does the call event arrive.
    let (status, v) = app
        .ingest_post(
            "/api/v1/calls",
            &json!({"id": "late", "caller": "79990009911", "callee": "79000000001", "date": rfc3339(call_time)}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        stored_visit(&pool, "late").await,
        (Some("early".into()), Some("vk_new".into()))
    );

    // An end event for a call never started is attributed the same way.
    let (status, v) = app
        .ingest_post(
            "/api/v1/calls/end-only/end",
            &json!({"status": "ANSWER", "duration": 5, "caller": "79990009911",
                    "callee": "79000000001", "date": rfc3339(call_time)}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        stored_visit(&pool, "end-only").await.0.as_deref(),
        Some("early")
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn fields_given_in_the_call_event_win_over_the_visits(pool: PgPool) {
    let app = api_with_hold(pool.clone(), Duration::from_secs(150)).await;
    let id = pool_scenario(&app, &["79000000001"]).await;
    app.ingest_post(
        "/api/v1/visits",
        &json!({"scenario_id": id, "visit_id": "v1", "marker": "from_visit", "utm_source": "vk"}),
    )
    .await;
    let (status, _) = app
        .ingest_post(
            "/api/v1/calls",
            &json!({"id": "1", "caller": "79990009911", "callee": "79000000001", "marker": "from_call"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (visit_id, marker, utm): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("select visit_id, marker, utm_source from calls where id = '1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (visit_id.as_deref(), marker.as_deref(), utm.as_deref()),
        (Some("v1"), Some("from_call"), Some("vk"))
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_call_to_a_free_number_is_sent_unattributed_and_counted(pool: PgPool) {
    let mut receiver = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    let s = app
        .create_scenario(json!({
            "name": "Pool",
            "numbers": ["79000000001", "79000000002"],
            "during_call_url": receiver.url("/during"),
        }))
        .await;
    let id = s["id"].as_str().unwrap();
    // The other number is reserved; this one is free.
    let r = visit(&app, id, "a").await;
    let free = if r["number"] == "79000000001" {
        "79000000002"
    } else {
        "79000000001"
    };

    let (status, v) = app
        .ingest_post(
            "/api/v1/calls",
            &json!({"id": "9", "caller": "79990009911", "callee": free, "date": rfc3339(now_secs())}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let body = receiver.next(Duration::from_secs(10)).await.json();
    for field in [
        "visit_id",
        "marker",
        "order_id",
        "google_client_id",
        "landing_page",
        "domain",
        "city",
        "country",
        "ip",
        "first_visit",
        "referrer",
        "utm_source",
        "source_level_1",
        "source_level_2",
    ] {
        assert_eq!(body[field], Value::Null, "{field} in {body}");
    }
    assert_eq!(body["callee"], free);

    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("callhook_calls_unattributed_total") && l.contains(id)),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn fifty_concurrent_visits_on_a_fifty_number_pool_get_fifty_distinct_numbers(pool: PgPool) {
    let app = api_with_hold(pool, Duration::from_secs(150)).await;
    let numbers: Vec<String> = (0..50).map(|i| format!("790000001{i:02}")).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let id = pool_scenario(&app, &refs).await;

    let answers = futures::future::join_all((0..50).map(|i| {
        let id = id.clone();
        let app = &app;
        async move { visit(app, &id, &format!("visit-{i}")).await }
    }))
    .await;
    assert!(answers.iter().all(|a| a["shared"] == false), "{answers:?}");
    let distinct: HashSet<_> = answers
        .iter()
        .map(|a| a["number"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(distinct.len(), 50);
    let p = pool_of(&app, &id).await;
    assert_eq!(
        (&p["reserved_now"], &p["free_now"]),
        (&json!(50), &json!(0))
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn static_numbers_are_never_reserved_and_calls_to_them_carry_their_fields(pool: PgPool) {
    let app = api_with_hold(pool.clone(), Duration::from_secs(150)).await;
    let s = app
        .create_scenario(json!({
            "name": "Offline",
            "numbers": ["79000000001"],
            "static_numbers": [{"number": "+7 (900) 000-00-09", "marker": "billboard",
                                "source_level_1": "offline", "source_level_2": "moscow"}],
        }))
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    assert_eq!(s["numbers"], json!(["79000000001"]));
    assert_eq!(
        s["static_numbers"],
        json!([{"number": "79000000009", "marker": "billboard", "source_level_1": "offline", "source_level_2": "moscow"}])
    );
    // What GET returns can be saved back unchanged.
    let (status, saved) = app.admin_put(&format!("/api/v1/scenarios/{id}"), &s).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["static_numbers"], s["static_numbers"]);
    assert_eq!(saved["numbers"], s["numbers"]);

    // Two visits share the one pool number rather than take the static one.
    assert_eq!(visit(&app, &id, "a").await["number"], "79000000001");
    let b = visit(&app, &id, "b").await;
    assert_eq!(
        (&b["number"], &b["shared"]),
        (&json!("79000000001"), &json!(true))
    );
    let p = pool_of(&app, &id).await;
    assert_eq!((&p["size"], &p["static_numbers"]), (&json!(1), &json!(1)));
    assert_eq!(p["numbers"][1]["state"], "static");

    let (status, v) = app
        .ingest_post(
            "/api/v1/calls",
            &json!({"id": "s1", "caller": "79990009911", "callee": "79000000009"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let (ls1, ls2): (Option<String>, Option<String>) =
        sqlx::query_as("select source_level_1, source_level_2 from calls where id = 's1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        stored_visit(&pool, "s1").await,
        (None, Some("billboard".into()))
    );
    assert_eq!(
        (ls1.as_deref(), ls2.as_deref()),
        (Some("offline"), Some("moscow"))
    );

    // A number is in one list only.
    let (status, e) = app
        .admin_put(
            &format!("/api/v1/scenarios/{id}"),
            &json!({"name": "Offline", "numbers": ["79000000001"],
                    "static_numbers": [{"number": "79000000001"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["field"], "static_numbers[0].number");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_visit_needs_a_known_scenario_and_a_visit_id(pool: PgPool) {
    let app = api_with_hold(pool, Duration::from_secs(150)).await;
    let id = pool_scenario(&app, &["79000000001"]).await;
    let cases = [
        (json!({"scenario_id": id}), "visit_id"),
        (json!({"visit_id": "a"}), "scenario_id"),
        (
            json!({"scenario_id": uuid::Uuid::now_v7(), "visit_id": "a"}),
            "scenario_id",
        ),
        (
            json!({"scenario_id": id, "visit_id": "a", "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let (status, e) = app.ingest_post("/api/v1/visits", &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {e}");
        assert_eq!(e["error"]["field"], field, "{body} → {e}");
    }
    let empty = pool_scenario(&app, &[]).await;
    let (status, e) = app
        .ingest_post(
            "/api/v1/visits",
            &json!({"scenario_id": empty, "visit_id": "a"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["code"], "empty_pool");
    let (status, _) = app
        .raw(
            reqwest::Method::POST,
            "/api/v1/visits",
            Some(ADMIN),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A batch attributes each call on its own (one query for all of them): a
/// reserved number, a static one, a free one, and an event naming its visit.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_batch_attributes_each_call_by_its_own_number(pool: PgPool) {
    let app = api_with_hold(pool.clone(), Duration::from_secs(150)).await;
    let s = app
        .create_scenario(json!({
            "name": "Mixed",
            "numbers": ["79000000001", "79000000002"],
            "static_numbers": [{"number": "79000000009", "marker": "billboard"}],
        }))
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    app.ingest_post(
        "/api/v1/visits",
        &json!({"scenario_id": id, "visit_id": "v1", "marker": "from_visit"}),
    )
    .await;
    let reserved = pool_of(&app, &id).await["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["state"] == "reserved")
        .map(|n| n["number"].as_str().unwrap().to_owned())
        .unwrap();
    let free = if reserved == "79000000001" {
        "79000000002"
    } else {
        "79000000001"
    };
    let call =
        |cid: &str, callee: &str| json!({"id": cid, "caller": "79990009911", "callee": callee});
    let mut named = call("named", &reserved);
    named["visit_id"] = json!("given");
    let body = json!({"calls": [
        call("reserved", &reserved),
        call("static", "79000000009"),
        call("free", free),
        named,
    ]});
    app.store_batch(&body).await;
    assert_eq!(
        stored_visit(&pool, "reserved").await,
        (Some("v1".into()), Some("from_visit".into()))
    );
    assert_eq!(
        stored_visit(&pool, "static").await,
        (None, Some("billboard".into()))
    );
    assert_eq!(stored_visit(&pool, "free").await, (None, None));
    assert_eq!(
        stored_visit(&pool, "named").await,
        (Some("given".into()), None)
    );
}
