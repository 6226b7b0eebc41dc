//! The delivery queue's lease (`queue` module docs): a claim stamps a
//! lease token; a completion applies only while the row still carries it;
//! a release hands the delivery back due now; claims skip what another
//! claim holds, so no delivery goes to two claimers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use callhook_core::DeliveryKind;
use callhook_store::calls;
use callhook_store::health::HealthSettings;
use callhook_store::queue;
use sqlx::PgPool;
use tokio::sync::Barrier;

use crate::common::*;

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_completion_holding_its_claims_lease_records_the_outcome(pool: PgPool) {
    scenario(&pool).await;
    let claimed = started_and_claimed(&pool, "c1").await;

    let done = queue::complete(&pool, &[delivered(&claimed)], &HealthSettings::default())
        .await
        .unwrap();

    assert_eq!(done.updated, 1);
    let row = delivery(&pool, claimed.id).await;
    assert_eq!(row.state, "delivered");
    assert_eq!(row.attempt_count, 1);
    assert_eq!(row.lease_token, None);
    assert_eq!(row.due_in, None);
    let attempts: Vec<(i32, Option<i32>)> = sqlx::query_as(
        "select attempt, response_status from delivery_attempts where delivery_id = $1",
    )
    .bind(claimed.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, vec![(1, Some(200))]);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_completion_whose_lease_was_taken_over_changes_nothing(pool: PgPool) {
    let s = scenario(&pool).await;
    created_one(store_start(&pool, start("c1")).await);
    // A lease that runs out at once: the next claim takes the delivery over.
    let first = claim(&pool, 1, Duration::ZERO).await.unwrap().remove(0);
    let second = claim_one(&pool).await;
    assert_eq!(second.id, first.id);
    assert_ne!(second.lease_token, first.lease_token);

    let done = queue::complete(&pool, &[failed(&first, false)], &HealthSettings::default())
        .await
        .unwrap();

    assert_eq!(done, queue::Completed::default(), "nothing written");
    let row = delivery(&pool, first.id).await;
    assert_eq!(row.state, "pending");
    assert_eq!(
        row.lease_token,
        Some(second.lease_token),
        "still the new owner's"
    );
    assert_eq!(row.attempt_count, 0);
    assert_eq!(
        count(&pool, "select count(*) from delivery_attempts").await,
        0
    );
    let (state, failures, _) = endpoint(&pool, s, DeliveryKind::DuringCall).await;
    assert_eq!(
        (state.as_str(), failures),
        ("healthy", 0),
        "health told nothing"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_released_delivery_is_due_again_without_a_lease(pool: PgPool) {
    scenario(&pool).await;
    let claimed = started_and_claimed(&pool, "c1").await;
    assert!(claim(&pool, 10, LEASE).await.unwrap().is_empty());

    let released = queue::release(&pool, &[claimed.id], &[claimed.lease_token])
        .await
        .unwrap();

    assert_eq!(released, 1);
    let row = delivery(&pool, claimed.id).await;
    assert_eq!(row.lease_token, None);
    assert!(row.is_due(), "{row:?}");
    let again = claim_one(&pool).await;
    assert_eq!(again.id, claimed.id);
    assert_eq!(again.attempt_count, 0, "a release is no attempt");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_release_under_a_lease_taken_over_leaves_the_new_claim_alone(pool: PgPool) {
    scenario(&pool).await;
    created_one(store_start(&pool, start("c1")).await);
    let first = claim(&pool, 1, Duration::ZERO).await.unwrap().remove(0);
    let second = claim_one(&pool).await;

    let released = queue::release(&pool, &[first.id], &[first.lease_token])
        .await
        .unwrap();

    assert_eq!(released, 0);
    let row = delivery(&pool, second.id).await;
    assert_eq!(row.lease_token, Some(second.lease_token));
    assert!(!row.is_due(), "still leased: {row:?}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_claim_skips_a_delivery_another_claim_holds_without_waiting_for_it(pool: PgPool) {
    scenario(&pool).await;
    let held = created_one(store_start(&pool, start("c1")).await);
    let free = created_one(store_start(&pool, start("c2")).await);
    // Another claim's transaction has locked c1's delivery and not committed.
    let mut other = pool.begin().await.unwrap();
    sqlx::query("select 1 from deliveries where id = $1 for update")
        .bind(held.id)
        .execute(&mut *other)
        .await
        .unwrap();

    let got = tokio::time::timeout(Duration::from_secs(30), claim(&pool, 10, LEASE))
        .await
        .expect("the claim does not wait for the other")
        .unwrap();

    assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), vec![free.id]);
    other.rollback().await.unwrap();
    assert_eq!(delivery(&pool, held.id).await.lease_token, None);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn concurrent_claims_never_hand_out_the_same_delivery(pool: PgPool) {
    const CALLS: usize = 40;
    const CLAIMERS: usize = 4;
    scenario(&pool).await;
    let starts: Vec<_> = (0..CALLS).map(|i| start(&format!("c{i:02}"))).collect();
    calls::start_batch(&pool, &starts, None, RULES)
        .await
        .unwrap();

    // Each claimer takes three at a time until nothing due is left (read
    // from Postgres: an empty claim only means another claimer holds the
    // endpoint's turn just now); all begin together.
    let gate = Arc::new(Barrier::new(CLAIMERS));
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|_| {
            let (pool, gate) = (pool.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wait().await;
                let mut mine = Vec::new();
                loop {
                    let got = claim(&pool, 3, LEASE).await.unwrap();
                    if got.is_empty() {
                        let due = count(
                            &pool,
                            "select count(*) from deliveries
                              where state = 'pending' and lease_token is null",
                        )
                        .await;
                        if due == 0 {
                            return mine;
                        }
                        tokio::task::yield_now().await;
                        continue;
                    }
                    mine.extend(got.into_iter().map(|c| (c.id, c.lease_token)));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }

    let ids: HashSet<_> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), all.len(), "a delivery went to two claimers");
    assert_eq!(ids.len(), CALLS, "every delivery was claimed");
    for (id, token) in all {
        assert_eq!(delivery(&pool, id).await.lease_token, Some(token));
    }
}
