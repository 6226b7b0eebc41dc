//! The operator's view: call and delivery reads, the filtered list and its
//! pagination, retries, test sends, the `delivery_log` view, metrics and
//! retention.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

/// A UUIDv7 of the time `t`, as ingest would have made it then.
fn v7_at(t: DateTime<Utc>) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        t.timestamp() as u64,
        t.timestamp_subsec_nanos(),
    ))
}

/// A port nothing listens on.
async fn closed_port_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/hook")
}

async fn scenario(app: &TestApp, name: &str, number: &str, during: &str, after: &str) -> Uuid {
    let s = app
        .create_scenario(json!({
            "name": name,
            "numbers": [number],
            "during_call_url": during,
            "after_call_url": after,
            "custom_fields": [{"name": "source", "value": "{utm_source}-{city}"}],
        }))
        .await;
    s["id"].as_str().unwrap().parse().unwrap()
}

/// Inserts a call (if new) and one delivery created at `at`, in `state`.
/// Pending rows are due in an hour, so the dispatcher leaves them alone.
async fn seed(
    pool: &PgPool,
    scenario_id: Uuid,
    call_id: &str,
    kind: &str,
    state: &str,
    at: DateTime<Utc>,
) -> Uuid {
    sqlx::query(
        "insert into calls (id, scenario_id, caller, callee, started_at, created_at)
         values ($1, $2, '79990009911', '78005552233', $3, $3) on conflict (id) do nothing",
    )
    .bind(call_id)
    .bind(scenario_id)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    let id = v7_at(at);
    sqlx::query(
        "insert into deliveries (id, call_id, scenario_id, kind, payload, state, attempt_count,
                                 next_attempt_at, created_at, delivered_at)
         values ($1, $2, $3, $4, '{\"id\":\"x\"}', $5, 1,
                 case when $5 = 'pending' then now() + interval '1 hour' end, $6,
                 case when $5 = 'delivered' then $6 end)",
    )
    .bind(id)
    .bind(call_id)
    .bind(scenario_id)
    .bind(kind)
    .bind(state)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    id
}

fn ids(page: &Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, page) = app.admin_get(&format!("/api/v1/deliveries?{query}")).await;
    assert_eq!(status.as_u16(), 200, "{query}: {page}");
    page
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn call_detail_shows_the_call_its_deliveries_and_their_attempts(pool: PgPool) {
    let rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    scenario(&app, "Main", "78005552233", &rx.url("/d"), &rx.url("/a")).await;
    let (s, _) = app.ingest_post("/api/v1/calls", &page_call("313")).await;
    assert_eq!(s.as_u16(), 202);
    let (s, _) = app
        .ingest_post(
            "/api/v1/calls/313/end",
            &json!({"status": "ANSWER", "duration": 20}),
        )
        .await;
    assert_eq!(s.as_u16(), 202);
    let call = eventually(WAIT, "both webhooks delivered", || async {
        let (_, c) = app.admin_get("/api/v1/calls/313").await;
        let done = c["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["state"] == "delivered"));
        done.then_some(c)
    })
    .await;
    assert_eq!(call["id"], "313");
    assert_eq!(call["caller"], "79990009911");
    assert_eq!(call["status"], "ANSWER");
    assert_eq!(call["duration"], 20);
    assert_eq!(call["utm_source"], Value::Null);
    assert_eq!(call["city"], "Москва");
    assert!(call.get("start_hash").is_none() && call.get("end_hash").is_none());
    let kinds: Vec<_> = call["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["during_call", "after_call"]);
    for d in call["deliveries"].as_array().unwrap() {
        assert_eq!(d["attempt_count"], 1);
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d}");
        assert_eq!(d["attempts"][0]["response_status"], 200);
        assert!(d["payload"]
            .as_str()
            .unwrap()
            .starts_with("{\"id\":\"313\""));
    }

    let (s, e) = app.admin_get("/api/v1/calls/404404").await;
    assert_eq!(s.as_u16(), 404, "{e}");
    assert_eq!(e["error"]["code"], "not_found");
    let (s, _) = app
        .raw(
            reqwest::Method::GET,
            "/api/v1/calls/313",
            Some(INGEST),
            None,
        )
        .await;
    assert_eq!(s.as_u16(), 401, "the call view needs the admin token");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn delivery_list_filters_by_scenario_call_state_kind_and_time(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let a = scenario(&app, "A", "78005552233", "", "").await;
    let b = scenario(&app, "B", "78005552234", "", "").await;
    let now = Utc::now();
    let h = |n: i64| now - chrono::Duration::hours(n);
    let a1 = seed(&pool, a, "a1", "during_call", "delivered", h(5)).await;
    let a1b = seed(
        &pool,
        a,
        "a1",
        "after_call",
        "failed",
        h(5) + chrono::Duration::seconds(1),
    )
    .await;
    let a2 = seed(&pool, a, "a2", "during_call", "failed", h(3)).await;
    let a3 = seed(&pool, a, "a3", "during_call", "pending", h(1)).await;
    let b1 = seed(&pool, b, "b1", "after_call", "cancelled", h(4)).await;
    let b2 = seed(&pool, b, "b2", "during_call", "failed", h(2)).await;

    let all = list(&app, "").await;
    assert_eq!(ids(&all), [a3, b2, a2, b1, a1b, a1], "newest first");
    assert_eq!(all["next"], Value::Null);
    let item = &all["items"][0];
    for key in [
        "id",
        "call_id",
        "scenario_id",
        "kind",
        "state",
        "attempt_count",
        "next_attempt_at",
        "last_status",
        "last_error",
        "created_at",
        "delivered_at",
        "payload",
    ] {
        assert!(item.get(key).is_some(), "item has {key}: {item}");
    }
    assert_eq!(item["payload"], "{\"id\":\"x\"}");

    assert_eq!(
        ids(&list(&app, &format!("scenario_id={b}")).await),
        [b2, b1]
    );
    assert_eq!(ids(&list(&app, "call_id=a1").await), [a1b, a1]);
    assert_eq!(ids(&list(&app, "state=failed").await), [b2, a2, a1b]);
    assert_eq!(ids(&list(&app, "kind=after_call").await), [b1, a1b]);
    assert_eq!(
        ids(&list(&app, &format!("scenario_id={a}&state=failed")).await),
        [a2, a1b]
    );
    let t = |d: DateTime<Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        ids(&list(
            &app,
            &format!("since={}", t(h(3) - chrono::Duration::minutes(1)))
        )
        .await),
        [a3, b2, a2]
    );
    assert_eq!(
        ids(&list(
            &app,
            &format!("until={}", t(h(4) + chrono::Duration::minutes(1)))
        )
        .await),
        [b1, a1b, a1]
    );
    // An offset with `+`, unencoded, survives form decoding.
    let since = (h(2) - chrono::Duration::minutes(1))
        .with_timezone(&chrono::FixedOffset::east_opt(3 * 3600).unwrap())
        .to_rfc3339();
    assert_eq!(
        ids(&list(&app, &format!("since={since}&kind=during_call")).await),
        [a3, b2]
    );

    for (query, field) in [
        ("state=lost", "state"),
        ("kind=sms", "kind"),
        ("scenario_id=nope", "scenario_id"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("after=%21%21", "after"),
        ("colour=red", "colour"),
    ] {
        let (s, e) = app.admin_get(&format!("/api/v1/deliveries?{query}")).await;
        assert_eq!(s.as_u16(), 422, "{query}: {e}");
        assert_eq!(e["error"]["field"], field, "{query}: {e}");
    }
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn pagination_neither_skips_nor_repeats_while_new_rows_arrive(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let s = scenario(&app, "A", "78005552233", "", "").await;
    let mut expected = Vec::new();
    for i in 0..25 {
        let at = Utc::now() - chrono::Duration::seconds(100 - i);
        expected.push(seed(&pool, s, &format!("c{i}"), "during_call", "delivered", at).await);
    }
    expected.reverse();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &after {
            Some(a) => format!("limit=10&after={a}"),
            None => "limit=10".to_owned(),
        };
        let page = list(&app, &q).await;
        seen.extend(ids(&page));
        pages += 1;
        // New deliveries arrive between pages.
        for j in 0..3 {
            seed(
                &pool,
                s,
                &format!("new{pages}-{j}"),
                "during_call",
                "failed",
                Utc::now(),
            )
            .await;
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected, "every row once, in order");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);

    // The default page is 50; limit caps at 500.
    let page = list(&app, "").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 34);
    let page = list(&app, "limit=500").await;
    assert_eq!(page["next"], Value::Null);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn delivery_detail_lists_its_attempts_in_order(pool: PgPool) {
    let rx = Receiver::scripted(
        vec![Reply::Status(500), Reply::Status(503)],
        Reply::Status(200),
    )
    .await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "100ms,100ms,100ms".parse().unwrap()
    })
    .await;
    scenario(&app, "A", "78005552233", &rx.url("/d"), "").await;
    let id: Uuid = start_call(&app, "313").await;
    wait_state(&pool, id, "delivered", WAIT).await;

    let (s, d) = app.admin_get(&format!("/api/v1/deliveries/{id}")).await;
    assert_eq!(s.as_u16(), 200, "{d}");
    assert_eq!(d["state"], "delivered");
    assert_eq!(d["attempt_count"], 3);
    let attempts = d["attempts"].as_array().unwrap();
    let numbers: Vec<_> = attempts
        .iter()
        .map(|a| a["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    let statuses: Vec<_> = attempts
        .iter()
        .map(|a| a["response_status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 503, 200]);
    assert_eq!(attempts[0]["url"], rx.url("/d"));
    assert_eq!(attempts[2]["response_body"], "ok");

    let (s, _) = app
        .admin_get(&format!("/api/v1/deliveries/{}", Uuid::now_v7()))
        .await;
    assert_eq!(s.as_u16(), 404);
    let (s, _) = app.admin_get("/api/v1/deliveries/not-a-uuid").await;
    assert_eq!(s.as_u16(), 404);
}

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
async fn retry_of_a_pending_delivery_is_a_conflict(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let s = scenario(&app, "A", "78005552233", "", "").await;
    let id = seed(&pool, s, "c1", "during_call", "pending", Utc::now()).await;
    let (status, e) = app
        .admin_post(&format!("/api/v1/deliveries/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status.as_u16(), 409, "{e}");
    assert_eq!(e["error"]["code"], "already_pending");
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
