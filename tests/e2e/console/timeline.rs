//! A call's timeline on its page, and sending an after-call webhook again
//! with a recording that came after it went (issue 27).

use serde_json::json;
use sqlx::PgPool;

use super::{attr, select, Operator};
use crate::helpers::*;

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);
const LINK: &str = "https://pbx.example/rec/t1.mp3";

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_calls_timeline_shows_its_holds_and_a_late_recording_is_sent_again_with_it(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    app.create_scenario(json!({
        "name": "CRM", "numbers": ["78005552233"], "recording_wait": "30m",
        "during_call_url": rx.url("/during"), "after_call_url": rx.url("/after"),
    }))
    .await;
    let during = start_call(&app, "t1").await;
    assert_eq!(rx.next(WAIT).await.path, "/during");
    wait_state(&pool, during, "delivered", WAIT).await;
    end_call(&app, "t1").await;

    // Held for its recording: the timeline says so, and until when.
    let op = Operator::sign_in(&app).await;
    let html = op.page(&app, "/console/calls/t1?lang=en").await;
    let lines = select(&html, "#timeline tr").join("\n");
    for expected in [
        "Call started",
        "Call ended",
        "attempt 1",
        "held for the call's recording until",
    ] {
        assert!(lines.contains(expected), "{expected} in:\n{lines}");
    }
    assert!(
        select(&html, "button.resend-with-recording").is_empty(),
        "nothing to send again yet"
    );

    // An operator sends it now, without the recording; the recording comes
    // after it went.
    let after: uuid::Uuid =
        sqlx::query_scalar("select id from deliveries where kind = 'after_call'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let (status, body) = app
        .admin_post(&format!("/api/v1/deliveries/{after}/retry"), &json!({}))
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(rx.next(WAIT).await.json()["link"], serde_json::Value::Null);
    wait_state(&pool, after, "delivered", WAIT).await;
    let (status, body) = app
        .ingest_post("/api/v1/calls/t1/recording", &json!({"link": LINK}))
        .await;
    assert_eq!(
        (status.as_u16(), body["after_call"].as_str()),
        (202, Some("sent_without_it")),
        "{body}"
    );

    let html = op.page(&app, "/console/calls/t1?lang=en").await;
    let lines = select(&html, "#timeline tr").join("\n");
    assert!(lines.contains("Recording reported"), "{lines}");
    assert!(
        lines.contains("came after the after-call webhook went"),
        "{lines}"
    );
    let csrf = attr(
        &html,
        "form:has(button.resend-with-recording) input[name=csrf]",
        "value",
    );
    let resent = op
        .post(
            &app,
            &format!("/console/deliveries/{after}/retry"),
            &[("csrf".into(), csrf), ("rebuild".into(), "true".into())],
        )
        .await;
    assert_eq!(resent.status(), 303);
    let again = rx.next(WAIT).await;
    assert_eq!(again.json()["link"], LINK);
    assert_eq!(again.header("webhook-id"), after.to_string());
}
