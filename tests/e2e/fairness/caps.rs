//! In-flight caps: an endpoint at its cap is not claimed, a slow receiver's
//! rows waiting for their host hold no place anyone else needs, limits are
//! checked, and a receiver asking for less gets less (docs/scheduling.md,
//! rules 5 and 6).

use std::time::Duration;

use callhook::{Role, ServeConfig};
use serde_json::json;
use sqlx::PgPool;

use super::{call, flood, leased, scenario, FLOOD, QUIET, WAIT};

const OTHER_FLOOD: &str = "78005550003";

/// A dispatcher of `seats` seats sending one request at a time to a host,
/// with `cap` per endpoint and `seat_wait` for a host's turn; no request
/// times out within a test (a held receiver is slow, never failing).
fn one_request_per_host(c: &mut ServeConfig, seats: usize, cap: i32, seat_wait: Duration) {
    c.concurrency = seats;
    c.per_host_concurrency = 1;
    c.endpoint_max_in_flight = Some(cap);
    c.request_timeout = Duration::from_secs(600);
    c.seat_wait = Some(seat_wait);
    c.lease = Duration::from_secs(1800);
}
use crate::helpers::*;
use crate::process::*;

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_endpoint_at_its_cap_is_not_claimed(pool: PgPool) {
    let (flood_url, arrived, gate) = gated_counting_receiver(Duration::ZERO, 0).await;
    let mut quiet_rx = Receiver::ok().await;
    let api = spawn_app_with(pool.clone(), |c| c.role = Role::Api).await;
    let flood_id = scenario(&api, "flood", FLOOD, &flood_url, "").await;
    scenario(&api, "quiet", QUIET, &quiet_rx.url("/during"), "").await;
    let (status, view) = api
        .admin_put(
            &format!("/api/v1/scenarios/{flood_id}/endpoints/during_call/limits"),
            &json!({"max_in_flight": 2}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{view}");
    assert_eq!(view["max_in_flight"], 2);
    flood(&api, "f", FLOOD, 10).await;
    let dispatcher = spawn_app_with(pool.clone(), |c| c.role = Role::Dispatcher).await;
    eventually(WAIT, "two flood webhooks in flight", || async {
        (arrived.total() == 2).then_some(())
    })
    .await;
    // A claim after that one: the quiet call's webhook is claimed and sent.
    api.ingest_post("/api/v1/calls", &call("q1", QUIET)).await;
    quiet_rx.next(WAIT).await;
    assert_eq!(
        leased(&pool, &flood_id).await,
        2,
        "nothing more claimed for it"
    );
    assert_eq!(arrived.total(), 2);
    let (_, list) = api.admin_get("/api/v1/endpoints").await;
    let e = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["scenario_id"] == flood_id.as_str() && e["kind"] == "during_call")
        .unwrap()
        .clone();
    assert_eq!(
        (&e["deliveries_in_flight"], &e["deliveries_due"], &e["cap"]),
        (&json!(2), &json!(8), &json!(2)),
        "{e}"
    );
    gate.open();
    dispatcher.stop().await;
    api.stop().await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_slow_receivers_rows_waiting_for_their_host_hold_no_place_another_webhook_needs(
    pool: PgPool,
) {
    // Two seats: 8 places among the unrecorded (and 8 in the waiting room).
    // One request at a time to a host, held by the receiver, and waits for a
    // request or the host's turn longer than the test, so nothing the flood
    // claimed goes back to the queue to free a place.
    const PLACES: i64 = 8;
    const CAP: i64 = 12;
    let (flood_url, arrived, gate) = gated_counting_receiver(Duration::ZERO, 0).await;
    let mut quiet_rx = Receiver::ok().await;
    let api = spawn_app_with(pool.clone(), |c| c.role = Role::Api).await;
    let flood_id = scenario(&api, "flood", FLOOD, &flood_url, "").await;
    scenario(&api, "quiet", QUIET, &quiet_rx.url("/during"), "").await;
    flood(&api, "f", FLOOD, 50).await;
    let dispatcher = spawn_app_with(pool.clone(), |c| {
        c.role = Role::Dispatcher;
        one_request_per_host(c, 2, CAP as i32, Duration::from_secs(600));
    })
    .await;
    // One flood webhook on the wire, held, and more of the flood claimed than
    // the dispatcher has places (an endpoint at its cap is claimed again once
    // a quarter of it is free): were the rows waiting for their host holding
    // their places, claims would have stopped at 8, with no place left for
    // anyone else.
    eventually(
        WAIT,
        "the flood claimed past the places, one request held",
        || async {
            (arrived.total() == 1 && leased(&pool, &flood_id).await >= CAP - CAP / 4).then_some(())
        },
    )
    .await;
    api.ingest_post("/api/v1/calls", &call("q1", QUIET)).await;
    assert_eq!(quiet_rx.next(WAIT).await.json()["id"], "q1");
    assert_eq!(
        arrived.total(),
        1,
        "the flood's receiver still holds its one"
    );
    assert!(leased(&pool, &flood_id).await > PLACES);
    // The operator sees them wait: once the claims have stopped (the flood
    // at its cap), every leased row but the one on the wire.
    eventually(
        WAIT,
        "every leased flood row but one waiting for its host",
        || async {
            let waiting = sample(
                &dispatcher.metrics().await,
                "callhook_deliveries_waiting_for_host",
            );
            (waiting == (leased(&pool, &flood_id).await - 1) as f64).then_some(())
        },
    )
    .await;
    gate.open();
    dispatcher.stop().await;
    api.stop().await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn with_the_waiting_room_full_a_waiting_delivery_goes_back_rather_than_hold_a_place(
    pool: PgPool,
) {
    // Three seats: 12 places and 12 in the waiting room. Two slow receivers,
    // each holding its one request (one at a time to a host), and caps of
    // 20: their waiting rows fill the room. Were the rest to wait in their
    // places, claims would stop with every place taken, and nothing else
    // could go until the receivers answered (the wait for a host outlasts
    // the test).
    const ROOM: f64 = 12.0;
    let (a_url, a_arrived, a_gate) = gated_counting_receiver(Duration::ZERO, 0).await;
    let (b_url, b_arrived, b_gate) = gated_counting_receiver(Duration::ZERO, 0).await;
    let mut quiet_rx = Receiver::ok().await;
    let api = spawn_app_with(pool.clone(), |c| c.role = Role::Api).await;
    scenario(&api, "slow a", FLOOD, &a_url, "").await;
    scenario(&api, "slow b", OTHER_FLOOD, &b_url, "").await;
    scenario(&api, "quiet", QUIET, &quiet_rx.url("/during"), "").await;
    flood(&api, "a", FLOOD, 50).await;
    flood(&api, "b", OTHER_FLOOD, 50).await;
    let dispatcher = spawn_app_with(pool.clone(), |c| {
        c.role = Role::Dispatcher;
        one_request_per_host(c, 3, 20, Duration::from_secs(600));
    })
    .await;
    eventually(
        WAIT,
        "both receivers holding one, the room full",
        || async {
            let text = dispatcher.metrics().await;
            (a_arrived.total() == 1
                && b_arrived.total() == 1
                && sample(&text, "callhook_deliveries_waiting_for_host") == ROOM
                && sample(&text, r#"callhook_host_waits_total{result="room_full"}"#) > 0.0)
                .then_some(())
        },
    )
    .await;
    api.ingest_post("/api/v1/calls", &call("q1", QUIET)).await;
    assert_eq!(quiet_rx.next(WAIT).await.json()["id"], "q1");
    assert_eq!((a_arrived.total(), b_arrived.total()), (1, 1));
    a_gate.open();
    b_gate.open();
    dispatcher.stop().await;
    api.stop().await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn endpoint_limits_are_checked_and_name_the_field(pool: PgPool) {
    let app = spawn_app_with(pool, |c| c.role = Role::Api).await;
    let id = scenario(&app, "s", FLOOD, "http://127.0.0.1:9/d", "").await;
    let path = format!("/api/v1/scenarios/{id}/endpoints/during_call/limits");
    for (body, field) in [
        (json!({"max_in_flight": 0}), "max_in_flight"),
        (json!({"max_per_second": -1}), "max_per_second"),
        (json!({"max_in_flight": 2, "burst": 1}), "burst"),
    ] {
        let (status, err) = app.admin_put(&path, &body).await;
        assert_eq!(status.as_u16(), 422, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{err}");
    }
    let (status, err) = app
        .admin_put(
            &format!("/api/v1/scenarios/{id}/endpoints/operator_event/limits"),
            &json!({}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &err["error"]["field"]),
        (422, &json!("kind")),
        "{err}"
    );
    let (status, v) = app
        .admin_put(&path, &json!({"max_in_flight": 3, "max_per_second": 2.5}))
        .await;
    assert_eq!(status.as_u16(), 200, "{v}");
    assert_eq!((&v["cap"], &v["max_per_second"]), (&json!(3), &json!(2.5)));
    let (_, audit) = app.admin_get("/api/v1/audit-log").await;
    assert_eq!(audit["items"][0]["action"], "endpoint.limits", "{audit}");
}

/// The during-call endpoint's cap in force, as the API shows it.
async fn cap_of(app: &TestApp, scenario_id: &str) -> i64 {
    let (_, list) = app.admin_get("/api/v1/endpoints").await;
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["scenario_id"] == scenario_id && e["kind"] == "during_call")
        .unwrap()["cap"]
        .as_i64()
        .unwrap()
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_receiver_answering_429_gets_a_lower_cap_that_recovers_when_it_answers_again(
    pool: PgPool,
) {
    let rx = Receiver::scripted(
        vec![Reply::Status(429), Reply::Status(429), Reply::Status(429)],
        Reply::Status(200),
    )
    .await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "200ms,200ms,200ms,200ms".parse().unwrap();
        c.endpoint_max_in_flight = Some(8);
    })
    .await;
    let id = scenario(&app, "busy", FLOOD, &rx.url("/busy"), "").await;
    for i in 0..3 {
        app.ingest_post("/api/v1/calls", &call(&format!("c{i}"), FLOOD))
            .await;
    }
    eventually(WAIT, "the cap halved after the 429s", || async {
        (cap_of(&app, &id).await <= 4).then_some(())
    })
    .await;
    // The receiver answers 200 from now on: each good batch raises the cap
    // by one until it is back at 8.
    cap_grows_back_to(&app, &id, 8).await;
    app.stop().await;
}

/// Reports calls to `FLOOD` until the during-call endpoint's cap is back at
/// `max` (each batch of good answers raises it by one).
async fn cap_grows_back_to(app: &TestApp, scenario_id: &str, max: i64) {
    let mut n = 0;
    eventually(WAIT, "the cap back at its maximum", || {
        n += 1;
        let call_id = format!("again{n}");
        async move {
            app.ingest_post("/api/v1/calls", &call(&call_id, FLOOD))
                .await;
            (cap_of(app, scenario_id).await == max).then_some(())
        }
    })
    .await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_receiver_slower_than_its_cap_gets_a_lower_cap_and_its_health_is_untouched(pool: PgPool) {
    // One request at a time to the host, held by the receiver (and no
    // request timeout in the test's time): the rest of the cap waits for the
    // host's turn, a second at most, then goes back to the queue. Nothing
    // failed, yet the receiver keeps up with less than its cap.
    let (slow_url, arrived, gate) = gated_counting_receiver(Duration::ZERO, 0).await;
    let app = spawn_app_with(pool.clone(), |c| {
        one_request_per_host(c, 2, 8, Duration::from_secs(1));
    })
    .await;
    let id = scenario(&app, "slow", FLOOD, &slow_url, "").await;
    flood(&app, "s", FLOOD, 20).await;
    eventually(WAIT, "the cap halved by its busy host", || async {
        (cap_of(&app, &id).await <= 4).then_some(())
    })
    .await;
    assert_eq!(
        arrived.total(),
        1,
        "one request on the wire, held: no other"
    );
    let (_, s) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    let during = &s["health"]["during_call"];
    assert_eq!(
        (&during["state"], &during["consecutive_failures"]),
        (&json!("healthy"), &json!(0)),
        "a busy host is no failure: {s}"
    );
    // The receiver answers from now on: the cap grows back to its maximum.
    gate.open();
    cap_grows_back_to(&app, &id, 8).await;
    app.stop().await;
}
