//! The support ticket: "our CRM says notifications don't arrive". The
//! receiver answered 500, the calls wait on a 5-minute retry schedule, the
//! receiver is fixed, and one "send now" on the endpoint sends every waiting
//! webhook at once, each call's during-call webhook before its after-call one.

use serde_json::json;
use sqlx::PgPool;

use super::*;

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn one_send_now_after_the_receiver_is_fixed_sends_every_waiting_webhook_in_call_order(
    pool: PgPool,
) {
    // Three calls, started and ended: each during-call webhook fails once
    // (500) and waits five minutes; each after-call one waits behind it.
    let Ticket {
        mut rx,
        app,
        scenario: s,
    } = failing_crm(&pool, &["t1", "t2", "t3"]).await;
    let blocked: i64 = sqlx::query_scalar(
        "select count(*) from deliveries where kind = 'after_call' and blocked_by is not null",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        blocked, 3,
        "each after-call webhook waits for its during-call one"
    );

    // The receiver is fixed; the operator sends now.
    rx.answer(Reply::Status(200));
    let (status, sent) = app
        .admin_post(
            &format!("/api/v1/scenarios/{s}/endpoints/during_call/send-now"),
            &json!({}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{sent}");
    assert_eq!(sent["deliveries"], 3);
    each_call_during_first(&mut rx, &["t1", "t2", "t3"]).await;
    let (_, trail) = app
        .admin_get(&format!("/api/v1/audit-log?scenario_id={s}"))
        .await;
    assert_eq!(trail["items"][0]["action"], "endpoint.send_now");
    assert_eq!(trail["items"][0]["details"]["deliveries"], 3);
}

/// The operator's other tool: Pause then Enable on the during-call endpoint.
/// An operator's pause keeps each call's after-call webhook waiting behind
/// its during-call one (it used to release them, and the receiver got
/// `POST /after` first); calls that come in while it is paused wait the
/// same way; Enable sends each call's during-call webhook first.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn pausing_and_enabling_the_during_call_endpoint_keeps_each_calls_order(pool: PgPool) {
    let Ticket {
        mut rx,
        app,
        scenario: s,
    } = failing_crm(&pool, &["p1", "p2", "p3"]).await;
    let blocked = || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from deliveries a join deliveries d on d.id = a.blocked_by
              where a.kind = 'after_call' and a.state = 'pending' and a.next_attempt_at is null
                and d.call_id = a.call_id and d.kind = 'during_call'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(blocked().await, 3);

    // The receiver is fixed; the operator pauses the during-call endpoint.
    rx.answer(Reply::Status(200));
    let (status, paused) = app
        .admin_post(
            &format!("/api/v1/scenarios/{s}/endpoints/during_call/pause"),
            &json!({}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{paused}");
    assert_eq!(
        blocked().await,
        3,
        "the pause released no after-call webhook ahead of its during-call one"
    );
    // A call while it is paused: its after-call webhook waits the same way.
    start_and_end(&app, "p4").await;
    assert_eq!(blocked().await, 4);
    // Where it waits is said: the delivery names what it waits for.
    let (_, listed) = app
        .admin_get("/api/v1/deliveries?call_id=p4&kind=after_call")
        .await;
    let after = &listed["items"][0];
    assert!(after["blocked_by"].is_string(), "{listed}");

    let (status, enabled) = app
        .admin_post(
            &format!("/api/v1/scenarios/{s}/endpoints/during_call/enable"),
            &json!({}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{enabled}");
    each_call_during_first(&mut rx, &["p1", "p2", "p3", "p4"]).await;
}
