//! Repeats and conflicts (`calls` module docs): the same event again is
//! answered with what it stored; the same call id with other data is
//! refused; an end for a call nobody started, without its caller, is not
//! found.

use callhook_core::CallStatus;
use callhook_store::calls::{self, IngestError, Ingested};
use sqlx::PgPool;

use crate::common::*;

fn conflict(result: Result<Ingested, IngestError>) -> String {
    match result {
        Err(IngestError::Conflict(why)) => why,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_same_start_again_is_answered_with_what_it_stored(pool: PgPool) {
    scenario(&pool).await;
    let first = created(store_start(&pool, start("c1")).await);

    let again = store_start(&pool, start("c1")).await;

    match again {
        Ok(Ingested::Repeated(d)) => assert_eq!(d, first),
        other => panic!("expected Repeated, got {other:?}"),
    }
    assert_eq!(count(&pool, "select count(*) from deliveries").await, 1);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_start_repeated_within_one_batch_is_answered_as_a_repeat_of_the_first(pool: PgPool) {
    scenario(&pool).await;

    let batch = calls::start_batch(&pool, &[start("c1"), start("c1")], None, RULES)
        .await
        .unwrap();

    let [first, second] = <[_; 2]>::try_from(batch.results).unwrap();
    let first = created(first);
    match second {
        Ok(Ingested::Repeated(d)) => assert_eq!(d, first),
        other => panic!("expected Repeated, got {other:?}"),
    }
    assert_eq!(count(&pool, "select count(*) from deliveries").await, 1);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_same_end_again_is_answered_with_what_it_stored(pool: PgPool) {
    scenario(&pool).await;
    store_start(&pool, start("c1")).await.unwrap();
    let first = created(store_end(&pool, "c1", &end()).await);

    let (again, work) = calls::end(&pool, "c1", &end(), GRACES, MAX).await.unwrap();

    match again {
        Ingested::Repeated(d) => assert_eq!(d, first),
        other => panic!("expected Repeated, got {other:?}"),
    }
    assert_eq!(work.queued, 0);
    assert_eq!(
        count(
            &pool,
            "select count(*) from deliveries where kind = 'after_call'"
        )
        .await,
        1
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_start_with_a_stored_call_id_and_other_data_is_a_conflict(pool: PgPool) {
    scenario(&pool).await;
    store_start(&pool, start("c1")).await.unwrap();
    let other = calls::StartCall {
        caller: phone("79990001122"),
        ..start("c1")
    };

    conflict(store_start(&pool, other).await);

    let caller: String = sqlx::query_scalar("select caller from calls where id = 'c1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(caller, CALLER, "the stored call is unchanged");
    assert_eq!(count(&pool, "select count(*) from deliveries").await, 1);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_end_with_other_data_than_the_calls_end_is_a_conflict(pool: PgPool) {
    scenario(&pool).await;
    store_start(&pool, start("c1")).await.unwrap();
    store_end(&pool, "c1", &end()).await.unwrap();
    let other = calls::EndCall {
        status: CallStatus::Answer,
        duration: 42,
        ..end()
    };

    conflict(store_end(&pool, "c1", &other).await);

    let (status, duration): (String, i32) =
        sqlx::query_as("select status, duration from calls where id = 'c1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), duration), ("NOANSWER", 0));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_late_start_naming_another_caller_than_the_end_is_a_conflict(pool: PgPool) {
    scenario(&pool).await;
    store_end(&pool, "c1", &end_with_caller()).await.unwrap();
    let other = calls::StartCall {
        caller: phone("79990001122"),
        ..start("c1")
    };

    conflict(store_start(&pool, other).await);

    assert_eq!(
        count(
            &pool,
            "select count(*) from calls where start_hash is not null"
        )
        .await,
        0,
        "the start did not join"
    );
    assert_eq!(
        count(
            &pool,
            "select count(*) from deliveries where kind = 'during_call'"
        )
        .await,
        0
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_late_start_with_another_date_than_the_end_gave_is_a_conflict(pool: PgPool) {
    scenario(&pool).await;
    let ended = calls::EndCall {
        date: Some("2026-03-02 10:00:00".into()),
        ..end_with_caller()
    };
    store_end(&pool, "c1", &ended).await.unwrap();
    let other = calls::StartCall {
        date: Some("2026-03-02 10:05:00".into()),
        ..start("c1")
    };

    conflict(store_start(&pool, other).await);

    assert_eq!(
        count(
            &pool,
            "select count(*) from deliveries where kind = 'during_call'"
        )
        .await,
        0
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_end_without_caller_for_an_unknown_call_is_call_not_found(pool: PgPool) {
    scenario(&pool).await;

    let result = store_end(&pool, "c1", &end()).await;

    assert!(
        matches!(result, Err(IngestError::CallNotFound(_))),
        "{result:?}"
    );
    assert_eq!(count(&pool, "select count(*) from calls").await, 0);
    assert_eq!(count(&pool, "select count(*) from deliveries").await, 0);
}
