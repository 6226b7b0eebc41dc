//! The operator's view: call and delivery reads, the filtered list and its
//! pagination (here); retries (`retry`), test sends (`test_send`), the
//! `delivery_log` view, OpenAPI, metrics and retention (`views`).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

mod retry;
mod send_now;
mod test_send;
mod views;

pub(super) const WAIT: Duration = Duration::from_secs(15);

/// A UUIDv7 of the time `t`, as ingest would have made it then.
pub(super) fn v7_at(t: DateTime<Utc>) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        t.timestamp() as u64,
        t.timestamp_subsec_nanos(),
    ))
}

/// A port nothing listens on.
pub(super) async fn closed_port_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/hook")
}

pub(super) async fn scenario(
    app: &TestApp,
    name: &str,
    number: &str,
    during: &str,
    after: &str,
) -> Uuid {
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
pub(super) async fn seed(
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

pub(super) fn ids(page: &Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

pub(super) async fn list(app: &TestApp, query: &str) -> Value {
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
