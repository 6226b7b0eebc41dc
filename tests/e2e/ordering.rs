//! Call events in any order: ends before starts, late starts, the start
//! grace, and removing a URL.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

async fn scenario_to(app: &TestApp, rx: &Receiver) -> serde_json::Value {
    app.create_scenario(json!({
        "name": "Main",
        "numbers": ["78005552233"],
        "during_call_url": rx.url("/during"),
        "after_call_url": rx.url("/after"),
    }))
    .await
}

fn end_with_caller() -> serde_json::Value {
    json!({"status": "BUSY", "duration": 0, "caller": "79990009911", "callee": "78005552233"})
}

/// A delivery's (state, last_error), by call and kind.
async fn state_of(pool: &PgPool, call_id: &str, kind: &str) -> (String, Option<String>) {
    sqlx::query_as("select state, last_error from deliveries where call_id = $1 and kind = $2")
        .bind(call_id)
        .bind(kind)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_start_a_second_after_its_end_goes_first_and_joins_the_call(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| c.start_grace = Duration::from_secs(60)).await;
    scenario_to(&app, &rx).await;

    let (status, ended) = app
        .ingest_post("/api/v1/calls/313/end", &end_with_caller())
        .await;
    assert_eq!(status.as_u16(), 202, "{ended}");
    assert_eq!(ended["deliveries"][0]["kind"], "after_call");
    // Not a wait: the test's own pacing (the start comes a second after the end,
    // well within the 60 s grace; nothing is awaited).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, started) = app.ingest_post("/api/v1/calls", &page_call("313")).await;
    assert_eq!(status.as_u16(), 202, "{started}");
    assert_eq!(started["deliveries"][0]["state"], "pending");

    let first = rx.next(WAIT).await;
    let second = rx.next(WAIT).await;
    assert_eq!(
        (first.path.as_str(), second.path.as_str()),
        ("/during", "/after")
    );
    // The after-call webhook carries what the start brought.
    let after = second.json();
    assert_eq!(after["visit_id"], "123456");
    assert_eq!(after["date"], "2019-02-19 00:00:00");
    assert_eq!(after["status"], "BUSY");
    assert_eq!(first.json()["visit_id"], "123456");

    // The same start again is a repeat; one with another caller a conflict.
    let (status, again) = app.ingest_post("/api/v1/calls", &page_call("313")).await;
    assert_eq!(status.as_u16(), 200, "{again}");
    let mut other = page_call("313");
    other["caller"] = json!("79990000000");
    other["date"] = json!("2019-02-19 00:00:01");
    let (status, err) = app.ingest_post("/api/v1/calls", &other).await;
    assert_eq!(status.as_u16(), 409, "{err}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_end_whose_start_never_comes_is_sent_when_the_grace_ends(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| c.start_grace = Duration::from_secs(2)).await;
    scenario_to(&app, &rx).await;

    let sent = Instant::now();
    let (status, _) = app
        .ingest_post("/api/v1/calls/314/end", &end_with_caller())
        .await;
    assert_eq!(status.as_u16(), 202);
    // Held: due at the end of the grace, counted from its own insert (both
    // times are the insert's, so how long this test took to get here does
    // not matter).
    let held: bool = sqlx::query_scalar(
        "select next_attempt_at - created_at >= interval '1.9 seconds'
           from deliveries where call_id = '314'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(held, "the after-call delivery waits for the grace");

    let got = rx.next(WAIT).await;
    assert_eq!(got.path, "/after");
    let waited = got.at - sent;
    assert!(
        waited >= Duration::from_millis(1900),
        "sent after {waited:?}"
    );
    assert_eq!(got.json()["visit_id"], serde_json::Value::Null);
    let rows = deliveries(&pool).await;
    assert_eq!(rows.len(), 1, "no during-call delivery without a start");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_start_after_its_after_call_webhook_was_delivered_is_cancelled(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| c.start_grace = Duration::from_millis(200)).await;
    scenario_to(&app, &rx).await;

    app.ingest_post("/api/v1/calls/315/end", &end_with_caller())
        .await;
    assert_eq!(rx.next(WAIT).await.path, "/after");
    eventually(WAIT, "the after-call delivery to be recorded", || async {
        (state_of(&pool, "315", "after_call").await.0 == "delivered").then_some(())
    })
    .await;

    let (status, started) = app.ingest_post("/api/v1/calls", &page_call("315")).await;
    assert_eq!(status.as_u16(), 202, "{started}");
    assert_eq!(started["deliveries"][0]["state"], "cancelled");
    assert_eq!(
        state_of(&pool, "315", "during_call").await,
        ("cancelled".into(), Some("call_already_ended".into()))
    );
    // The call has the start's fields now, and nothing more is sent.
    let (_, call) = app.admin_get("/api/v1/calls/315").await;
    assert_eq!(call["visit_id"], "123456", "{call}");
    let late = tokio::time::timeout(Duration::from_secs(1), rx.next(WAIT)).await;
    assert!(late.is_err(), "a cancelled delivery is not sent");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_end_without_caller_for_a_call_not_started_is_404_saying_to_resend(pool: PgPool) {
    let rx = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| c.role = callhook::Role::Api).await;
    scenario_to(&app, &rx).await;
    let end = json!({"status": "ANSWER", "duration": 3});
    let (status, err) = app.ingest_post("/api/v1/calls/316/end", &end).await;
    assert_eq!(status.as_u16(), 404, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("send this end again once its start is in"),
        "{err}"
    );
    start_call(&app, "316").await;
    let (status, ended) = app.ingest_post("/api/v1/calls/316/end", &end).await;
    assert_eq!(status.as_u16(), 202, "{ended}");
    // Waits for the during-call delivery, which is pending (no dispatcher).
    let (blocked, due): (Option<uuid::Uuid>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as(
            "select blocked_by, next_attempt_at from deliveries where call_id = '316' and kind = 'after_call'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
    let during: uuid::Uuid = sqlx::query_scalar(
        "select id from deliveries where call_id = '316' and kind = 'during_call'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((blocked, due), (Some(during), None));
    let (_, listed) = app
        .admin_get("/api/v1/deliveries?call_id=316&kind=after_call")
        .await;
    assert_eq!(listed["items"][0]["blocked_by"], during.to_string());
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn removing_a_url_cancels_its_pending_deliveries_by_the_time_the_save_answers(pool: PgPool) {
    let mut rx = Receiver::scripted(vec![], Reply::Status(503)).await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "5m".parse().unwrap();
    })
    .await;
    let s = scenario_to(&app, &rx).await;
    for id in ["1", "2", "3"] {
        start_call(&app, id).await;
    }
    for _ in 0..3 {
        assert_eq!(rx.next(WAIT).await.path, "/during");
    }
    eventually(WAIT, "three failed first attempts recorded", || async {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from deliveries where attempt_count = 1 and lease_token is null",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (n == 3).then_some(())
    })
    .await;
    // Ended meanwhile: the after-call deliveries wait for the during-call ones.
    for id in ["1", "2", "3"] {
        let (status, _) = app
            .ingest_post(
                &format!("/api/v1/calls/{id}/end"),
                &json!({"status": "ANSWER", "duration": 5}),
            )
            .await;
        assert_eq!(status.as_u16(), 202);
    }

    let path = format!("/api/v1/scenarios/{}", s["id"].as_str().unwrap());
    let (status, saved) = app
        .admin_put(
            &path,
            &json!({"name": "Main", "numbers": ["78005552233"], "after_call_url": rx.url("/after")}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{saved}");
    for id in ["1", "2", "3"] {
        assert_eq!(
            state_of(&pool, id, "during_call").await,
            ("cancelled".into(), Some("url_removed".into()))
        );
    }
    // Their after-call webhooks no longer wait.
    for _ in 0..3 {
        assert_eq!(rx.next(WAIT).await.path, "/after");
    }
    let (_, listed) = app
        .admin_get(&format!(
            "/api/v1/deliveries?scenario_id={}&state=cancelled",
            s["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 3, "{listed}");

    // They failed too and wait for their retry; deleting the scenario
    // cancels them at once.
    eventually(WAIT, "the after-call attempts recorded", || async {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from deliveries
              where kind = 'after_call' and attempt_count = 1 and lease_token is null",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (n == 3).then_some(())
    })
    .await;
    let (status, _) = app.admin_delete(&path).await;
    assert_eq!(status.as_u16(), 204);
    for id in ["1", "2", "3"] {
        assert_eq!(
            state_of(&pool, id, "after_call").await,
            ("cancelled".into(), Some("scenario_deleted".into()))
        );
    }
}

/// A scenario whose during-call receiver answers 500 forever (its retries
/// minutes apart) and whose after-call receiver works, on an app whose
/// during-call grace is 1 s (then `adjust`ed): the receivers and the app.
async fn failing_during_call_url(
    pool: &PgPool,
    adjust: impl FnOnce(&mut callhook::ServeConfig),
) -> (Receiver, Receiver, TestApp) {
    let down = Receiver::scripted(vec![], Reply::Status(500)).await;
    let crm = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "5m,30m,2h".parse().unwrap();
        c.during_call_grace = Duration::from_secs(1);
        adjust(c);
    })
    .await;
    app.create_scenario(json!({
        "name": "CRM", "numbers": ["78005552233"],
        "during_call_url": down.url("/during"), "after_call_url": crm.url("/after"),
    }))
    .await;
    (down, crm, app)
}

/// The test's one during-call delivery, which must have expired
/// (`cancelled` / `call_ended`): its id.
async fn during_call_expired(pool: &PgPool) -> uuid::Uuid {
    let (state, error, id): (String, Option<String>, uuid::Uuid) =
        sqlx::query_as("select state, last_error, id from deliveries where kind = 'during_call'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), error.as_deref()),
        ("cancelled", Some("call_ended"))
    );
    id
}

/// A during-call webhook exists for the time the phone rings. One still
/// failing when its call ends gets `CALLHOOK_DURING_CALL_GRACE` more (1 s
/// here), then is cancelled `call_ended`, and its after-call webhook goes;
/// an operator can still send it by hand.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_during_call_webhook_still_failing_when_its_call_ends_expires_and_the_after_call_goes(
    pool: PgPool,
) {
    let (mut down, mut crm, app) = failing_during_call_url(&pool, |_| {}).await;
    let mut call = page_call("x1");
    call["callee"] = json!("78005552233");
    let (status, body) = app.ingest_post("/api/v1/calls", &call).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    assert_eq!(down.next(WAIT).await.path, "/during");
    during_calls_waiting_a_retry(&pool, 1).await;
    end_call(&app, "x1").await;

    // The after-call webhook goes once the during-call one has expired.
    let after = crm.next(WAIT).await;
    assert_eq!(
        (after.path.as_str(), after.json()["id"].as_str()),
        ("/after", Some("x1"))
    );
    let during_id = during_call_expired(&pool).await;

    // An operator may still send it.
    let (status, body) = app
        .admin_post(&format!("/api/v1/deliveries/{during_id}/retry"), &json!({}))
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(down.next(WAIT).await.path, "/during");
}

/// A start that comes after its call's end (the end stored the call) adds a
/// during-call webhook that the after-call one waits for; the call has
/// ended, so that webhook gets the grace too, and a failing during-call
/// receiver holds the after-call webhook only that long.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_late_starts_during_call_webhook_expires_like_any_other(pool: PgPool) {
    let (mut down, mut crm, app) =
        failing_during_call_url(&pool, |c| c.start_grace = Duration::from_secs(3600)).await;
    let (status, body) = app
        .ingest_post(
            "/api/v1/calls/z1/end",
            &json!({"status": "ANSWER", "duration": 42,
                    "caller": "79990009911", "callee": "78005552233"}),
        )
        .await;
    assert_eq!(status.as_u16(), 202, "{body}");
    let mut call = page_call("z1");
    call["date"] = json!(null);
    let (status, body) = app.ingest_post("/api/v1/calls", &call).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    assert_eq!(down.next(WAIT).await.path, "/during");

    let after = crm.next(WAIT).await;
    assert_eq!(after.json()["id"], "z1");
    during_call_expired(&pool).await;
}

/// A scenario's own grace overrides the default, within an hour.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_scenarios_own_during_call_grace_is_the_one_its_calls_get(pool: PgPool) {
    let down = Receiver::scripted(vec![], Reply::Status(500)).await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "5m".parse().unwrap();
    })
    .await;
    let (status, e) = app
        .admin_post(
            "/api/v1/scenarios",
            &json!({"name": "s", "during_call_grace": "2h"}),
        )
        .await;
    assert_eq!(status.as_u16(), 422);
    assert_eq!(e["error"]["field"], "during_call_grace");
    let s = app
        .create_scenario(json!({
            "name": "CRM", "numbers": ["78005552233"],
            "during_call_url": down.url("/during"), "during_call_grace": "10m",
        }))
        .await;
    assert_eq!(s["during_call_grace"], "10m");
    start_and_end(&app, "g1").await;
    let left: f64 = sqlx::query_scalar(
        "select extract(epoch from expires_at - now())::float8 from deliveries where kind = 'during_call'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(left > 540.0 && left <= 600.0, "{left}");
}

/// An operator paused the during-call endpoint: its calls' during-call
/// deliveries wait, parked, and their after-call ones wait behind them.
/// When a call ends, its parked during-call delivery still expires after the
/// grace (the dispatchers' once-a-second look), and its after-call webhook
/// goes.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_parked_during_call_webhook_expires_too_and_releases_its_after_call(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.during_call_grace = Duration::from_secs(1);
    })
    .await;
    let s = app
        .create_scenario(json!({
            "name": "CRM", "numbers": ["78005552233"],
            "during_call_url": rx.url("/during"), "after_call_url": rx.url("/after"),
        }))
        .await;
    let id = s["id"].as_str().unwrap();
    let (status, body) = app
        .admin_post(
            &format!("/api/v1/scenarios/{id}/endpoints/during_call/pause"),
            &json!({}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    start_and_end(&app, "y1").await;
    let got = rx.next(WAIT).await;
    assert_eq!(
        (got.path.as_str(), got.json()["id"].as_str()),
        ("/after", Some("y1"))
    );
    during_call_expired(&pool).await;
}

/// A receiver that answers nothing until the test opens its gate: each
/// request is reported at once, and answered `200` once the gate is open.
struct Gated {
    addr: std::net::SocketAddr,
    arrived: tokio::sync::mpsc::UnboundedReceiver<()>,
    gate: tokio::sync::watch::Sender<bool>,
}

impl Gated {
    async fn start() -> Self {
        let (tx, arrived) = tokio::sync::mpsc::unbounded_channel();
        let (gate, open) = tokio::sync::watch::channel(false);
        let app = axum::Router::new().fallback(move || {
            let tx = tx.clone();
            let mut open = open.clone();
            async move {
                let _ = tx.send(());
                let _ = open.wait_for(|o| *o).await;
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            arrived,
            gate,
        }
    }
}

/// A during-call webhook in flight when its grace runs out is not cut
/// short: its answer is awaited and recorded, and its after-call webhook is
/// sent only after it (the receiver here answers when the test lets it,
/// after the expiry has passed in Postgres).
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_after_call_webhook_waits_for_a_during_call_attempt_in_flight_past_its_expiry(
    pool: PgPool,
) {
    let mut during = Gated::start().await;
    let mut crm = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.during_call_grace = Duration::from_secs(1);
        c.request_timeout = Duration::from_secs(60);
        c.lease = Duration::from_secs(120);
    })
    .await;
    app.create_scenario(json!({
        "name": "CRM", "numbers": ["78005552233"],
        "during_call_url": format!("http://{}/during", during.addr),
        "after_call_url": crm.url("/after"),
    }))
    .await;
    let during_id = start_call(&app, "w1").await;
    tokio::time::timeout(WAIT, during.arrived.recv())
        .await
        .expect("the during-call webhook is sent")
        .unwrap();
    end_call(&app, "w1").await;
    // Its grace has run out while its attempt is still in flight.
    eventually(
        WAIT,
        "the during-call delivery's expiry to pass",
        || async {
            let (expired, leased): (bool, bool) = sqlx::query_as(
                "select expires_at < now(), lease_token is not null from deliveries where id = $1",
            )
            .bind(during_id)
            .fetch_one(&pool)
            .await
            .unwrap();
            assert!(leased, "still in flight");
            expired.then_some(())
        },
    )
    .await;
    let answered = Instant::now();
    during.gate.send(true).unwrap();

    let after = crm.next(WAIT).await;
    assert!(
        after.at > answered,
        "the after-call webhook came after the during-call answer"
    );
    wait_state(&pool, during_id, "delivered", WAIT).await;
}
