//! What else moves an endpoint (`health::control`): an operator's pause
//! (deliveries wait, no probes) and enable (they drain), and the probes of
//! an endpoint its health paused: one at a time, the oldest waiting
//! delivery, and its success makes the endpoint healthy.

use std::time::Duration;

use callhook_core::{DeliveryKind, EndpointState, HealthPolicy, Transition};
use callhook_store::health::{self, HealthSettings};
use callhook_store::queue;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::*;

const DURING: DeliveryKind = DeliveryKind::DuringCall;
const HOUR: Duration = Duration::from_secs(3600);

/// Health with the default policy and no operator events (so the queue
/// holds only the calls' deliveries).
fn settings() -> HealthSettings {
    HealthSettings {
        operator_events: false,
        ..health(HealthPolicy::default())
    }
}

/// A scenario whose during-call endpoint its health paused with a probe
/// due now, and two deliveries waiting for it: the one whose failure paused
/// it (the oldest) and a newer one.
async fn paused_with_a_probe_due(pool: &PgPool) -> (Uuid, Uuid, Uuid) {
    let s = scenario(pool).await;
    failing_for_two_hours(pool, s).await;
    let oldest = started_and_claimed(pool, "c1").await;
    let newer = created_one(store_start(pool, start("c2")).await);
    let settings = HealthSettings {
        policy: HealthPolicy {
            probe_interval: Duration::ZERO,
            ..HealthPolicy::default()
        },
        ..settings()
    };
    queue::complete(pool, &[failed(&oldest, false)], &settings)
        .await
        .unwrap();
    assert_eq!(endpoint(pool, s, DURING).await.0, "paused");
    (s, oldest.id, newer.id)
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_operators_pause_parks_the_endpoints_deliveries_and_sends_no_probes(pool: PgPool) {
    let s = scenario(&pool).await;
    let waiting = created_one(store_start(&pool, start("c1")).await);

    let switched = health::pause(&pool, s, DURING, &settings()).await.unwrap();

    let paused = Transition {
        from: EndpointState::Healthy,
        to: EndpointState::Paused,
    };
    assert_eq!(switched.transition, Some(paused));
    assert_eq!(switched.deliveries, 1, "one delivery waits");
    let row = delivery(&pool, waiting.id).await;
    assert!(row.parked && row.due_in.is_none(), "{row:?}");
    assert_eq!(endpoint(&pool, s, DURING).await.2, None, "no probe armed");
    let probes = health::take_probes(&pool, LEASE, Duration::ZERO)
        .await
        .unwrap();
    assert!(probes.is_empty(), "{probes:?}");
    assert!(claim(&pool, 10, LEASE).await.unwrap().is_empty());
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn enabling_a_paused_endpoint_drains_its_waiting_deliveries(pool: PgPool) {
    let s = scenario(&pool).await;
    let waiting = created_one(store_start(&pool, start("c1")).await);
    health::pause(&pool, s, DURING, &settings()).await.unwrap();

    let switched = health::enable(&pool, s, DURING, &settings()).await.unwrap();

    let enabled = Transition {
        from: EndpointState::Paused,
        to: EndpointState::Healthy,
    };
    assert_eq!(switched.transition, Some(enabled));
    assert_eq!(switched.deliveries, 1, "one delivery will go");
    let row = delivery(&pool, waiting.id).await;
    assert!(!row.parked && row.is_due(), "{row:?}");
    assert_eq!(claim_one(&pool).await.id, waiting.id);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn two_takers_of_a_due_probe_get_one_probe_between_them(pool: PgPool) {
    let (s, oldest, newer) = paused_with_a_probe_due(&pool).await;
    // Both takers wait on the endpoint's row lock, and go once it is free.
    let hold = lock_endpoint_row(&pool, s, DURING).await;
    let takers: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { health::take_probes(&pool, LEASE, HOUR).await })
        })
        .collect();
    let handles: Vec<_> = takers.iter().map(|t| t.abort_handle()).collect();
    until_waiting(&pool, 2, &handles).await;

    hold.commit().await.unwrap();
    let mut probes = Vec::new();
    for t in takers {
        probes.extend(t.await.unwrap().unwrap());
    }

    assert_eq!(probes.len(), 1, "one probe: {probes:?}");
    let probe = &probes[0];
    assert!(probe.probe);
    assert_eq!(probe.id, oldest, "the oldest waiting delivery");
    let row = delivery(&pool, oldest).await;
    assert_eq!(row.lease_token, Some(probe.lease_token));
    assert!(!row.parked);
    assert!(delivery(&pool, newer).await.parked, "the other still waits");
    let (_, _, next_probe_at) = endpoint(&pool, s, DURING).await;
    assert!(
        next_probe_at.is_some_and(|t| t > chrono::Utc::now()),
        "the next in an interval"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_successful_probe_makes_the_paused_endpoint_healthy_and_drains_the_rest(pool: PgPool) {
    let (s, oldest, newer) = paused_with_a_probe_due(&pool).await;
    let probe = health::take_probes(&pool, LEASE, HOUR)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(probe.id, oldest);

    let done = queue::complete(&pool, &[delivered(&probe)], &settings())
        .await
        .unwrap();

    let recovered = Transition {
        from: EndpointState::Paused,
        to: EndpointState::Healthy,
    };
    let moves: Vec<_> = done.transitions.iter().map(|c| c.transition).collect();
    assert_eq!(moves, vec![recovered]);
    let (state, failures, _) = endpoint(&pool, s, DURING).await;
    assert_eq!((state.as_str(), failures), ("healthy", 0));
    assert_eq!(delivery(&pool, oldest).await.state, "delivered");
    let row = delivery(&pool, newer).await;
    assert!(!row.parked && row.is_due(), "drained: {row:?}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_enable_resets_the_failure_count_of_an_endpoint_still_healthy(pool: PgPool) {
    let s = scenario(&pool).await;
    sqlx::query(
        "update endpoints set consecutive_failures = 4, failing_since = now() - interval '2 hours'
          where scenario_id = $1 and kind = 'during_call'",
    )
    .bind(s)
    .execute(&pool)
    .await
    .unwrap();

    let switched = health::enable(&pool, s, DURING, &settings()).await.unwrap();

    assert_eq!(switched.transition, None, "it was healthy");
    let (state, failures, _) = endpoint(&pool, s, DURING).await;
    assert_eq!((state.as_str(), failures), ("healthy", 0), "counts reset");
    let failing_since: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "select failing_since from endpoints where scenario_id = $1 and kind = 'during_call'",
    )
    .bind(s)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(failing_since, None);
}
