//! Endpoint health as attempts' results move it (`health` module docs and
//! `callhook_core::health`): healthy → failing after `failing_after`
//! failures in a row, failing → paused after `pause_after` without a
//! success (its deliveries parked), any → disabled on a 410; and each
//! transition happens once however many recorders race it.

use callhook_core::{DeliveryKind, EndpointState, HealthPolicy, Transition};
use callhook_store::health::Changed;
use callhook_store::queue;
use sqlx::PgPool;

use crate::common::*;

const DURING: DeliveryKind = DeliveryKind::DuringCall;

fn moved(scenario: uuid::Uuid, from: EndpointState, to: EndpointState, error: &str) -> Changed {
    Changed {
        scenario_id: scenario,
        kind: DURING,
        transition: Transition { from, to },
        last_error: Some(error.into()),
    }
}

async fn operator_events(pool: &PgPool) -> i64 {
    count(
        pool,
        "select count(*) from deliveries where kind = 'operator_event'",
    )
    .await
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn failing_after_failures_in_a_row_make_a_healthy_endpoint_failing(pool: PgPool) {
    let s = scenario(&pool).await;
    let settings = health(HealthPolicy {
        failing_after: 3,
        ..HealthPolicy::default()
    });
    for call in ["c1", "c2"] {
        let c = started_and_claimed(&pool, call).await;
        let done = queue::complete(&pool, &[failed(&c, false)], &settings)
            .await
            .unwrap();
        assert_eq!(done.transitions, vec![], "{call}: still healthy");
    }
    assert_eq!(
        endpoint(&pool, s, DURING).await.0,
        "healthy",
        "two failures in a row"
    );

    let c = started_and_claimed(&pool, "c3").await;
    let done = queue::complete(&pool, &[failed(&c, false)], &settings)
        .await
        .unwrap();

    let failing = moved(
        s,
        EndpointState::Healthy,
        EndpointState::Failing,
        "http_500",
    );
    assert_eq!(done.transitions, vec![failing]);
    let (state, failures, _) = endpoint(&pool, s, DURING).await;
    assert_eq!((state.as_str(), failures), ("failing", 3));
    assert_eq!(operator_events(&pool).await, 1, "the operator is told once");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_failing_endpoint_without_a_success_for_pause_after_is_paused_and_its_deliveries_wait(
    pool: PgPool,
) {
    let s = scenario(&pool).await;
    failing_for_two_hours(&pool, s).await;
    let settings = health(HealthPolicy::default()); // pause_after: one hour
    let attempted = started_and_claimed(&pool, "c1").await;
    let waiting = created_one(store_start(&pool, start("c2")).await);

    let done = queue::complete(&pool, &[failed(&attempted, false)], &settings)
        .await
        .unwrap();

    let paused = moved(s, EndpointState::Failing, EndpointState::Paused, "http_500");
    assert_eq!(done.transitions, vec![paused]);
    let (state, _, next_probe_at) = endpoint(&pool, s, DURING).await;
    assert_eq!(state, "paused");
    assert!(next_probe_at.is_some(), "a probe is armed");
    for id in [attempted.id, waiting.id] {
        let row = delivery(&pool, id).await;
        assert!(row.parked && row.state == "pending", "{row:?}");
        assert_eq!(row.due_in, None, "out of the claims' way");
    }
    let claimed = claim(&pool, 10, LEASE).await.unwrap();
    assert!(
        claimed
            .iter()
            .all(|c| c.kind == DeliveryKind::OperatorEvent),
        "claims take none of the endpoint's deliveries: {claimed:?}"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_410_disables_a_healthy_endpoint_at_once(pool: PgPool) {
    let s = scenario(&pool).await;
    let settings = health(HealthPolicy::default());
    let c = started_and_claimed(&pool, "c1").await;

    let done = queue::complete(&pool, &[failed(&c, true)], &settings)
        .await
        .unwrap();

    let disabled = moved(
        s,
        EndpointState::Healthy,
        EndpointState::Disabled,
        "http_410",
    );
    assert_eq!(done.transitions, vec![disabled]);
    assert_eq!(endpoint(&pool, s, DURING).await.0, "disabled");
    let row = delivery(&pool, c.id).await;
    assert!(row.parked, "its delivery waits for an operator: {row:?}");
    assert_eq!(
        row.state, "pending",
        "not failed while the receiver is away"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn two_recorders_racing_the_same_transition_make_it_once(pool: PgPool) {
    let s = scenario(&pool).await;
    let settings = health(HealthPolicy {
        failing_after: 1,
        ..HealthPolicy::default()
    });
    for call in ["c1", "c2"] {
        created_one(store_start(&pool, start(call)).await);
    }
    let claimed = claim(&pool, 2, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    // Each failure alone makes the endpoint failing. Both recorders wait on
    // the endpoint's row lock, and go once it is free.
    let hold = lock_endpoint_row(&pool, s, DURING).await;
    let recorders: Vec<_> = claimed
        .iter()
        .map(|c| {
            let (pool, done) = (pool.clone(), failed(c, false));
            tokio::spawn(async move { queue::complete(&pool, &[done], &settings).await })
        })
        .collect();
    let handles: Vec<_> = recorders.iter().map(|r| r.abort_handle()).collect();
    until_waiting(&pool, 2, &handles).await;

    hold.commit().await.unwrap();
    let mut transitions = Vec::new();
    for r in recorders {
        let done = r.await.unwrap().unwrap();
        assert_eq!(done.updated, 1, "each recorded its own attempt");
        transitions.extend(done.transitions);
    }

    let failing = moved(
        s,
        EndpointState::Healthy,
        EndpointState::Failing,
        "http_500",
    );
    assert_eq!(transitions, vec![failing], "one transition between them");
    assert_eq!(operator_events(&pool).await, 1, "one operator event");
    let (state, failures, _) = endpoint(&pool, s, DURING).await;
    assert_eq!(
        (state.as_str(), failures),
        ("failing", 2),
        "both failures counted"
    );
}
