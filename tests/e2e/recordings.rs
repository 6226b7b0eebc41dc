//! Recordings reported on their own (`POST /api/v1/calls/{id}/recording`)
//! and after-call webhooks held for them (`recording_wait`), issue 27.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);
const LINK: &str = "https://pbx.example/rec/313.mp3";

/// A scenario for the page's number whose after-call webhook goes to `rx`,
/// held `wait` for a recording (none: not held).
async fn scenario(app: &TestApp, rx: &Receiver, wait: Option<&str>) -> Value {
    let mut s = json!({
        "name": "CRM", "numbers": ["78005552233"], "after_call_url": rx.url("/after"),
    });
    if let Some(w) = wait {
        s["recording_wait"] = json!(w);
    }
    app.create_scenario(s).await
}

/// The page's end: answered, 42 s, no recording.
async fn end_without_recording(app: &TestApp, id: &str) {
    let (status, body) = app
        .ingest_post(
            &format!("/api/v1/calls/{id}/end"),
            &json!({"status": "ANSWER", "duration": 42, "link": "", "file_id": ""}),
        )
        .await;
    assert_eq!(status.as_u16(), 202, "{body}");
}

/// The page's start for call `id` (the scenario may have no during-call URL).
async fn start(app: &TestApp, id: &str) {
    let (status, body) = app.ingest_post("/api/v1/calls", &page_call(id)).await;
    assert_eq!(status.as_u16(), 202, "{body}");
}

async fn report(app: &TestApp, id: &str, body: &Value) -> (u16, Value) {
    let (status, answer) = app
        .ingest_post(&format!("/api/v1/calls/{id}/recording"), body)
        .await;
    (status.as_u16(), answer)
}

/// The after-call delivery's hold, as psql shows it: seconds until it is
/// due, and until its hold for a recording ends (null: not held).
async fn after_call_hold(pool: &PgPool) -> (Option<f64>, Option<f64>) {
    sqlx::query_as(
        "select extract(epoch from next_attempt_at - now())::float8,
                extract(epoch from recording_due_at - now())::float8
           from deliveries where kind = 'after_call'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Held for its recording, the after-call webhook goes as soon as the
/// recording comes, with it in its place in the page's key order.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_webhook_held_for_its_recording_goes_with_it_when_it_comes(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    let s = scenario(&app, &rx, Some("30m")).await;
    assert_eq!(s["recording_wait"], "30m");
    start(&app, "313").await;
    let ended = Instant::now();
    end_without_recording(&app, "313").await;

    // Held: due in 30 minutes, for the recording.
    let (due_in, held_for) = after_call_hold(&pool).await;
    assert!(due_in.unwrap() > 1700.0, "{due_in:?}");
    assert!(held_for.unwrap() > 1700.0, "{held_for:?}");
    assert!(rx.drain().is_empty(), "nothing sent while it is held");

    let (status, body) = report(&app, "313", &json!({"link": LINK, "file_id": "f-313"})).await;
    assert_eq!(
        (status, body["after_call"].as_str()),
        (202, Some("sent_with_it")),
        "{body}"
    );
    let got = rx.next(WAIT).await;
    let text = std::str::from_utf8(&got.body).unwrap();
    assert!(
        text.ends_with(&format!(
            r#""status":"ANSWER","file_id":"f-313","duration":42,"link":"{LINK}"}}"#
        )),
        "{text}"
    );
    eprintln!(
        "after-call webhook arrived {:?} after the end (recording reported at once)",
        got.at - ended
    );
    assert_eq!(after_call_hold(&pool).await.1, None, "the hold is over");
}

/// No recording within the wait: the webhook goes when the wait ends, as it
/// would have without one, and not before.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn without_a_recording_the_held_webhook_goes_when_the_wait_ends(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    scenario(&app, &rx, Some("2s")).await;
    start(&app, "313").await;
    let before_end = Instant::now();
    end_without_recording(&app, "313").await;
    let got = rx.next(WAIT).await;
    assert_eq!(got.json()["link"], "");
    let waited = got.at - before_end;
    eprintln!("after-call webhook arrived {waited:?} after the end (wait 2 s)");
    assert!(waited >= Duration::from_millis(1950), "{waited:?}");
}

/// A recording that comes before the end is the end's: the webhook is not
/// held, and carries it.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_recording_that_comes_before_the_end_is_used_at_once(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    scenario(&app, &rx, Some("30m")).await;

    // Neither started nor ended: the telephony side sends it again later.
    let (status, body) = report(&app, "313", &json!({"link": LINK})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("call_not_found"))
    );

    start(&app, "313").await;
    let (status, body) = report(&app, "313", &json!({"link": LINK})).await;
    assert_eq!(
        (status, body["after_call"].as_str()),
        (202, Some("kept_for_end")),
        "{body}"
    );
    end_without_recording(&app, "313").await;
    // Held for 30 minutes it would not arrive within the wait.
    let got = rx.next(WAIT).await;
    assert_eq!(got.json()["link"], LINK);
    let (_, body) = app.admin_get("/api/v1/calls/313").await;
    assert_eq!(body["link"], LINK, "{body}");
}

/// A recording that comes after the webhook went is stored and shown, and
/// nothing is sent until an operator sends the webhook again with it.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_late_recording_is_stored_and_sent_only_when_an_operator_asks(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    scenario(&app, &rx, None).await;
    start(&app, "313").await;
    end_without_recording(&app, "313").await;
    assert_eq!(rx.next(WAIT).await.json()["link"], "");
    let after: uuid::Uuid =
        sqlx::query_scalar("select id from deliveries where kind = 'after_call'")
            .fetch_one(&pool)
            .await
            .unwrap();
    wait_state(&pool, after, "delivered", WAIT).await;

    let (status, body) = report(&app, "313", &json!({"link": LINK})).await;
    assert_eq!(
        (status, body["after_call"].as_str()),
        (202, Some("sent_without_it")),
        "{body}"
    );
    // Stored, shown; nothing queued.
    let (link, at_set): (Option<String>, bool) =
        sqlx::query_as("select link, recording_at is not null from calls where id = '313'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((link.as_deref(), at_set), (Some(LINK), true));
    let (_, body) = app.admin_get("/api/v1/calls/313").await;
    assert_eq!(body["link"], LINK, "{body}");
    let pending: i64 =
        sqlx::query_scalar("select count(*) from deliveries where state = 'pending'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, 0, "nothing is sent until asked");

    // Sent again, its body built again with the recording.
    let (status, body) = app
        .admin_post(
            &format!("/api/v1/deliveries/{after}/retry?rebuild=true"),
            &json!({}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let again = rx.next(WAIT).await;
    assert_eq!(again.json()["link"], LINK);
    assert_eq!(
        again.header("webhook-id"),
        after.to_string(),
        "the same webhook, again"
    );
    let (_, audit) = app.admin_get("/api/v1/audit-log").await;
    assert!(audit.to_string().contains(r#""rebuilt":true"#), "{audit}");
}

/// The same recording again is nothing new; another one for a call that has
/// one is a conflict; an empty report names its field.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_recording_is_stored_once_and_another_one_is_a_conflict(pool: PgPool) {
    let rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    scenario(&app, &rx, None).await;
    start(&app, "313").await;
    let (status, body) = report(&app, "313", &json!({})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("link")),
        "{body}"
    );
    let (status, body) = report(&app, "313", &json!({"link": LINK, "file_id": "f"})).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = report(&app, "313", &json!({"link": LINK, "file_id": "f"})).await;
    assert_eq!((status, body.get("after_call")), (200, None), "{body}");
    let (status, body) = report(&app, "313", &json!({"link": LINK})).await;
    assert_eq!(status, 200, "part of the same recording: {body}");
    let (status, body) = report(
        &app,
        "313",
        &json!({"link": "https://pbx.example/other.mp3"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    // The end carries a recording the call has: the same is fine.
    end_call(&app, "313").await;
    let link: Option<String> = sqlx::query_scalar("select link from calls where id = '313'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        link.as_deref(),
        Some(LINK),
        "an end without a link keeps the recording"
    );
}

/// Waiting for its during-call webhook and for a recording at once: the
/// during-call webhook's end releases it only into the rest of its wait, and
/// the recording sends it.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_recording_wait_outlasts_the_wait_for_the_during_call_webhook(pool: PgPool) {
    let mut during = Receiver::scripted(vec![Reply::Status(500)], Reply::Status(200)).await;
    let mut rx = Receiver::ok().await;
    // Its retry would come in 5 minutes: the test sends it now, by hand.
    let app = spawn_app_with(pool.clone(), |c| c.retry_schedule = "5m".parse().unwrap()).await;
    app.create_scenario(json!({
        "name": "CRM", "numbers": ["78005552233"], "recording_wait": "30m",
        "during_call_url": during.url("/during"), "after_call_url": rx.url("/after"),
    }))
    .await;
    start(&app, "313").await;
    assert_eq!(during.next(WAIT).await.path, "/during");
    during_calls_waiting_a_retry(&pool, 1).await;
    end_without_recording(&app, "313").await;
    let blocked: bool = sqlx::query_scalar(
        "select blocked_by is not null from deliveries where kind = 'after_call'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(blocked, "behind its during-call webhook");
    // The during-call webhook, sent now, succeeds: the after-call one is
    // still held.
    let during_id: uuid::Uuid =
        sqlx::query_scalar("select id from deliveries where kind = 'during_call'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let (status, body) = app
        .admin_post(&format!("/api/v1/deliveries/{during_id}/retry"), &json!({}))
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    during.next(WAIT).await;
    wait_state(&pool, during_id, "delivered", WAIT).await;
    let (due_in, _) = after_call_hold(&pool).await;
    assert!(
        due_in.unwrap() > 1700.0,
        "released into the rest of its wait: {due_in:?}"
    );

    let (status, body) = report(&app, "313", &json!({"link": LINK})).await;
    assert_eq!(
        (status, body["after_call"].as_str()),
        (202, Some("sent_with_it")),
        "{body}"
    );
    assert_eq!(rx.next(WAIT).await.json()["link"], LINK);
}

/// The setting is a duration of at most 30 minutes, named in its error.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_recording_wait_over_thirty_minutes_is_refused(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    for bad in ["31m", "soon"] {
        let (status, e) = app
            .admin_post(
                "/api/v1/scenarios",
                &json!({"name": "s", "recording_wait": bad}),
            )
            .await;
        assert_eq!(status.as_u16(), 422, "{bad}");
        assert_eq!(e["error"]["field"], "recording_wait");
    }
}
