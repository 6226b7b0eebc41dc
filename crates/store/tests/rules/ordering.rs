//! The ordering rules of `calls` (its module docs): a call's after-call
//! webhook goes after its during-call one, whichever event came first.

use callhook_core::{DeliveryKind, DeliveryState, Visit};
use callhook_store::calls;
use callhook_store::health::HealthSettings;
use callhook_store::queue;
use sqlx::PgPool;

use crate::common::*;

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_end_after_its_start_waits_for_the_during_call_delivery(pool: PgPool) {
    scenario(&pool).await;
    let during = created_one(store_start(&pool, start("c1")).await);

    let (ingested, work) = calls::end(&pool, "c1", &end(), GRACES, MAX).await.unwrap();
    let after = created_one(Ok(ingested));

    let row = delivery(&pool, after.id).await;
    assert_eq!(row.blocked_by, Some(during.id));
    assert_eq!(row.due_in, None, "no due time while it waits");
    assert_eq!(work.queued, 0, "nothing new for claims");
    let claimed: Vec<_> = claim(&pool, 10, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        claimed,
        vec![during.id],
        "claims take the during-call one only"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_during_calls_completion_makes_the_after_call_waiting_for_it_due(pool: PgPool) {
    scenario(&pool).await;
    let during = started_and_claimed(&pool, "c1").await;
    let after = created_one(store_end(&pool, "c1", &end()).await);

    let done = queue::complete(&pool, &[delivered(&during)], &HealthSettings::default())
        .await
        .unwrap();

    assert_eq!(done.woken, 1, "the after-call delivery was made due");
    let row = delivery(&pool, after.id).await;
    assert_eq!(row.blocked_by, None);
    assert!(row.is_due(), "{row:?}");
    assert_eq!(claim_one(&pool).await.id, after.id);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_end_after_the_during_call_is_final_is_due_at_once(pool: PgPool) {
    scenario(&pool).await;
    let during = started_and_claimed(&pool, "c1").await;
    queue::complete(&pool, &[delivered(&during)], &HealthSettings::default())
        .await
        .unwrap();

    let (ingested, work) = calls::end(&pool, "c1", &end(), GRACES, MAX).await.unwrap();
    let after = created_one(Ok(ingested));

    let row = delivery(&pool, after.id).await;
    assert_eq!(row.blocked_by, None);
    assert!(row.is_due(), "{row:?}");
    assert_eq!(work.queued, 1, "claims are told");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_end_before_its_start_holds_the_after_call_for_the_start_grace(pool: PgPool) {
    scenario(&pool).await;

    let (ingested, work) = calls::end(&pool, "c1", &end_with_caller(), GRACES, MAX)
        .await
        .unwrap();
    let after = created_one(Ok(ingested));

    let (start_hash, estimated): (Option<String>, bool) =
        sqlx::query_as("select start_hash, started_at_estimated from calls where id = 'c1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(start_hash, None, "the call is stored from its end");
    assert!(estimated, "its start time is the end's estimate");
    let row = delivery(&pool, after.id).await;
    assert_eq!(row.blocked_by, None);
    let due_in = row.due_in.expect("a due time");
    assert!(
        due_in > GRACE.as_secs_f64() - 5.0 && due_in <= GRACE.as_secs_f64(),
        "due in the grace: {due_in} s"
    );
    assert_eq!(work.queued, 0, "nothing for claims yet");
    assert!(claim(&pool, 10, LEASE).await.unwrap().is_empty());
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_late_start_joins_the_ends_call_and_its_during_call_goes_first(pool: PgPool) {
    scenario(&pool).await;
    let after = created_one(store_end(&pool, "c1", &end_with_caller()).await);
    let late = calls::StartCall {
        visit: Visit {
            utm_source: Some("spring-sale".into()),
            ..Visit::default()
        },
        ..start("c1")
    };

    let during = created_one(store_start(&pool, late).await);

    assert_eq!(during.kind, DeliveryKind::DuringCall);
    assert_eq!(during.state, DeliveryState::Pending);
    assert!(delivery(&pool, during.id).await.is_due());
    let row = delivery(&pool, after.id).await;
    assert_eq!(row.blocked_by, Some(during.id), "the after-call one waits");
    assert_eq!(row.due_in, None);
    assert!(
        row.payload.contains("spring-sale"),
        "rebuilt with the start's fields: {}",
        row.payload
    );
    let (calls, start_hash): (i64, Option<String>) =
        sqlx::query_as("select count(*), max(start_hash) from calls")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(calls, 1, "one call row");
    assert!(start_hash.is_some(), "the start joined it");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_late_start_after_the_after_call_was_attempted_is_stored_cancelled(pool: PgPool) {
    scenario(&pool).await;
    calls::end(
        &pool,
        "c1",
        &end_with_caller(),
        calls::Graces {
            start: std::time::Duration::ZERO,
            ..GRACES
        },
        MAX,
    )
    .await
    .unwrap();
    let after = claim_one(&pool).await;
    queue::complete(&pool, &[delivered(&after)], &HealthSettings::default())
        .await
        .unwrap();

    let mut batch = calls::start_batch(&pool, &[start("c1")], None, RULES)
        .await
        .unwrap();
    let during = created_one(batch.results.pop().unwrap());

    assert_eq!(during.state, DeliveryState::Cancelled);
    let row = delivery(&pool, during.id).await;
    assert_eq!(row.last_error.as_deref(), Some("call_already_ended"));
    assert_eq!(batch.work.queued, 0, "nothing to send");
    assert_eq!(delivery(&pool, after.id).await.state, "delivered");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_late_start_while_the_after_call_is_being_sent_is_stored_cancelled(pool: PgPool) {
    scenario(&pool).await;
    calls::end(
        &pool,
        "c1",
        &end_with_caller(),
        calls::Graces {
            start: std::time::Duration::ZERO,
            ..GRACES
        },
        MAX,
    )
    .await
    .unwrap();
    let in_flight = claim_one(&pool).await;

    let during = created_one(store_start(&pool, start("c1")).await);

    assert_eq!(during.state, DeliveryState::Cancelled);
    assert_eq!(
        delivery(&pool, during.id).await.last_error.as_deref(),
        Some("call_already_ended")
    );
    let row = delivery(&pool, in_flight.id).await;
    assert_eq!(row.blocked_by, None, "the one in flight is left alone");
    assert_eq!(row.lease_token, Some(in_flight.lease_token));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_late_start_rebuilds_the_held_after_call_of_a_scenario_without_a_during_call_webhook(
    pool: PgPool,
) {
    create_scenario(
        &pool,
        &callhook_store::scenarios::ScenarioSettings {
            during_call_url: None,
            ..settings(&[NUMBER])
        },
    )
    .await;
    let after = created_one(store_end(&pool, "c1", &end_with_caller()).await);
    let late = calls::StartCall {
        date: Some("2026-03-02 10:00:00".into()),
        visit: Visit {
            utm_source: Some("spring-sale".into()),
            ..Visit::default()
        },
        ..start("c1")
    };

    let mut batch = calls::start_batch(&pool, &[late], None, RULES)
        .await
        .unwrap();
    assert_eq!(created(batch.results.pop().unwrap()), vec![]);

    let row = delivery(&pool, after.id).await;
    let payload: serde_json::Value = serde_json::from_str(&row.payload).unwrap();
    assert_eq!(
        payload["utm_source"], "spring-sale",
        "rebuilt with the start's fields: {payload}"
    );
    assert_eq!(
        payload["date"], "2026-03-02 10:00:00",
        "the start's date, not the end's estimate: {payload}"
    );
    assert_eq!(row.blocked_by, None, "no during-call delivery to wait for");
    assert!(row.is_due(), "due now, not at the grace's end: {row:?}");
    assert_eq!(batch.work.queued, 1, "claims are told");
    assert_eq!(claim_one(&pool).await.id, after.id);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_late_start_rebuilds_a_parked_after_call_without_a_during_call_webhook_and_it_stays_parked(
    pool: PgPool,
) {
    let s = create_scenario(
        &pool,
        &callhook_store::scenarios::ScenarioSettings {
            during_call_url: None,
            ..settings(&[NUMBER])
        },
    )
    .await;
    callhook_store::health::pause(
        &pool,
        s,
        DeliveryKind::AfterCall,
        &HealthSettings::default(),
    )
    .await
    .unwrap();
    let after = created_one(store_end(&pool, "c1", &end_with_caller()).await);
    let late = calls::StartCall {
        visit: Visit {
            utm_source: Some("spring-sale".into()),
            ..Visit::default()
        },
        ..start("c1")
    };

    let mut batch = calls::start_batch(&pool, &[late], None, RULES)
        .await
        .unwrap();
    assert_eq!(created(batch.results.pop().unwrap()), vec![]);

    let row = delivery(&pool, after.id).await;
    assert!(row.payload.contains("spring-sale"), "{}", row.payload);
    assert!(
        row.parked && row.due_in.is_none(),
        "its endpoint is paused: {row:?}"
    );
    assert_eq!(batch.work.queued, 0, "nothing for claims");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_parked_after_call_a_late_start_put_behind_its_during_call_stays_behind_it_when_enabled(
    pool: PgPool,
) {
    let s = scenario(&pool).await;
    let settings = HealthSettings::default();
    callhook_store::health::pause(&pool, s, DeliveryKind::AfterCall, &settings)
        .await
        .unwrap();
    let after = created_one(store_end(&pool, "c1", &end_with_caller()).await);
    let during = created_one(store_start(&pool, start("c1")).await);
    assert_eq!(delivery(&pool, after.id).await.blocked_by, Some(during.id));

    callhook_store::health::enable(&pool, s, DeliveryKind::AfterCall, &settings)
        .await
        .unwrap();

    let row = delivery(&pool, after.id).await;
    assert!(
        !row.is_due(),
        "due while its during-call delivery is pending: {row:?}"
    );
    let claimed: Vec<_> = claim(&pool, 10, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(claimed, vec![during.id], "the during-call one goes first");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_blocked_after_call_of_a_paused_endpoint_is_parked_again_once_unblocked(pool: PgPool) {
    let s = scenario(&pool).await;
    let settings = HealthSettings::default();
    callhook_store::health::pause(&pool, s, DeliveryKind::AfterCall, &settings)
        .await
        .unwrap();
    let after = created_one(store_end(&pool, "c1", &end_with_caller()).await);
    let during = created_one(store_start(&pool, start("c1")).await);
    let row = delivery(&pool, after.id).await;
    assert_eq!(row.blocked_by, Some(during.id));
    assert!(
        !row.parked && row.due_in.is_none(),
        "blocked, not parked: {row:?}"
    );

    let sent = claim_one(&pool).await;
    assert_eq!(sent.id, during.id);
    queue::complete(&pool, &[delivered(&sent)], &settings)
        .await
        .unwrap();

    // Due once its during-call delivery is final; the claim tells its
    // endpoint is paused, so a dispatcher parks it instead of sending it.
    let taken = claim_one(&pool).await;
    assert_eq!(taken.id, after.id);
    assert_eq!(
        taken.endpoint_state,
        Some(callhook_core::EndpointState::Paused)
    );
    assert!(!taken.probe);
    let parked = queue::Completion {
        id: taken.id,
        lease_token: taken.lease_token,
        outcome: queue::Outcome::Parked,
        attempt: None,
        health: None,
    };
    queue::complete(&pool, &[parked], &settings).await.unwrap();
    let row = delivery(&pool, after.id).await;
    assert!(row.parked && row.due_in.is_none(), "waits parked: {row:?}");
    assert_eq!(row.attempt_count, 0, "never sent while paused");
}
