//! Starts and ends (and a completion) whose transactions cross: the one
//! that comes second waits for the first's commit and then joins what it
//! stored (`calls` module docs; `end::pending_during_call`). Each test
//! holds the first transaction open at a foreign-key check (the scenario's
//! row lock, `lock_scenario_row`), sees the second wait on it in Postgres,
//! and only then lets the first commit.

use callhook_core::DeliveryState;
use callhook_store::health::HealthSettings;
use callhook_store::queue;
use sqlx::PgPool;

use crate::common::*;

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_start_waiting_on_an_ends_uncommitted_call_joins_it_and_goes_first(pool: PgPool) {
    let s = scenario(&pool).await;
    let mut hold = lock_scenario_row(&pool, s).await;
    let holder = backend_pid(&mut hold).await;
    // The end has inserted the call row and not committed.
    let ending = tokio::spawn({
        let pool = pool.clone();
        async move { store_end(&pool, "c1", &end_with_caller()).await }
    });
    until_waiting(&pool, 1, &[ending.abort_handle()]).await;
    // The start's insert of the same call waits for the end's commit.
    let starting = tokio::spawn({
        let pool = pool.clone();
        async move { store_start(&pool, start("c1")).await }
    });
    until_waiting(&pool, 2, &[ending.abort_handle(), starting.abort_handle()]).await;
    assert_in_line_behind(&pool, holder).await;

    hold.commit().await.unwrap();
    let after = created_one(ending.await.unwrap());
    let during = created_one(starting.await.unwrap());

    assert_eq!(during.state, DeliveryState::Pending);
    assert!(delivery(&pool, during.id).await.is_due());
    let row = delivery(&pool, after.id).await;
    assert_eq!(row.blocked_by, Some(during.id), "the after-call one waits");
    assert_eq!(
        count(
            &pool,
            "select count(*) from calls where start_hash is not null and end_hash is not null"
        )
        .await,
        1,
        "one call row, with both events"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_end_waiting_on_a_starts_uncommitted_call_waits_behind_its_during_call(pool: PgPool) {
    let s = scenario(&pool).await;
    let mut hold = lock_scenario_row(&pool, s).await;
    let holder = backend_pid(&mut hold).await;
    // The start has inserted the call and its delivery, and not committed.
    let starting = tokio::spawn({
        let pool = pool.clone();
        async move { store_start(&pool, start("c1")).await }
    });
    until_waiting(&pool, 1, &[starting.abort_handle()]).await;
    // The end does not see the call yet: its own insert waits for the start's commit.
    let ending = tokio::spawn({
        let pool = pool.clone();
        async move { store_end(&pool, "c1", &end_with_caller()).await }
    });
    until_waiting(&pool, 2, &[starting.abort_handle(), ending.abort_handle()]).await;
    assert_in_line_behind(&pool, holder).await;

    hold.commit().await.unwrap();
    let during = created_one(starting.await.unwrap());
    let after = created_one(ending.await.unwrap());

    let row = delivery(&pool, after.id).await;
    assert_eq!(
        row.blocked_by,
        Some(during.id),
        "the end joined the started call"
    );
    assert_eq!(row.due_in, None);
    assert!(delivery(&pool, during.id).await.is_due());
    assert_eq!(count(&pool, "select count(*) from calls").await, 1);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_during_call_completion_waiting_on_an_end_unblocks_the_after_call_it_added(pool: PgPool) {
    let s = scenario(&pool).await;
    let during = started_and_claimed(&pool, "c1").await;
    let mut hold = lock_scenario_row(&pool, s).await;
    let holder = backend_pid(&mut hold).await;
    // The end has locked the pending during-call delivery and inserted the
    // after-call one behind it, and not committed.
    let ending = tokio::spawn({
        let pool = pool.clone();
        async move { store_end(&pool, "c1", &end()).await }
    });
    until_waiting(&pool, 1, &[ending.abort_handle()]).await;
    // The during-call delivery's completion waits for that lock.
    let completing = tokio::spawn({
        let pool = pool.clone();
        let done = delivered(&during);
        async move { queue::complete(&pool, &[done], &HealthSettings::default()).await }
    });
    until_waiting(
        &pool,
        2,
        &[ending.abort_handle(), completing.abort_handle()],
    )
    .await;
    assert_in_line_behind(&pool, holder).await;

    hold.commit().await.unwrap();
    let after = created_one(ending.await.unwrap());
    let done = completing.await.unwrap().unwrap();

    assert_eq!(done.updated, 1);
    assert_eq!(done.woken, 1, "the completion made the after-call one due");
    assert_eq!(delivery(&pool, during.id).await.state, "delivered");
    let row = delivery(&pool, after.id).await;
    assert_eq!(
        row.blocked_by, None,
        "not left waiting for a final delivery"
    );
    assert!(row.is_due(), "{row:?}");
}
