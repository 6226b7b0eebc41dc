//! Number pools (`pool` module docs): reserving a scenario's numbers for
//! website visits, and attributing calls to the visit whose reservation
//! covered the number at the call's time.

use std::time::Duration;

use callhook_core::Visit;
use callhook_store::calls::{self, IngestError, StartCall};
use callhook_store::pool::{self, Reservation};
use callhook_store::scenarios::{ScenarioSettings, StaticNumber};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::*;

const HOLD: Duration = Duration::from_secs(60);

fn visit(id: &str) -> Visit {
    Visit {
        visit_id: Some(id.into()),
        utm_source: Some("spring-sale".into()),
        utm_medium: Some("cpc".into()),
        ..Visit::default()
    }
}

/// A scenario whose pool is [`NUMBER`] and [`NUMBER_2`].
async fn pool_of_two(pool: &PgPool) -> Uuid {
    create_scenario(pool, &settings(&[NUMBER, NUMBER_2])).await
}

async fn reserve(pool: &PgPool, scenario: Uuid, visit_id: &str, hold: Duration) -> Reservation {
    pool::reserve(pool, scenario, &visit(visit_id), hold)
        .await
        .expect("a number is reserved")
}

/// The visit fields a call was stored with: (visit_id, utm_source, utm_medium, marker).
async fn call_visit(pool: &PgPool, id: &str) -> [Option<String>; 4] {
    let row: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = sqlx::query_as("select visit_id, utm_source, utm_medium, marker from calls where id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
    [row.0, row.1, row.2, row.3]
}

/// Stores a start and returns the scenarios reported unattributed.
async fn start_and_unattributed(pool: &PgPool, input: StartCall) -> Vec<Uuid> {
    let batch = calls::start_batch(pool, &[input], None, RULES)
        .await
        .unwrap();
    assert!(batch.results[0].is_ok(), "{:?}", batch.results);
    batch.work.unattributed
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn free_numbers_go_out_least_recently_released_first(pool: PgPool) {
    let s = pool_of_two(&pool).await;
    // Visit a's reservation ends at once: NUMBER is free again, released now.
    let a = reserve(&pool, s, "a", Duration::ZERO).await;
    assert_eq!(a.number, NUMBER, "both never used: by number");

    let b = reserve(&pool, s, "b", HOLD).await;
    let c = reserve(&pool, s, "c", HOLD).await;

    assert_eq!(
        b.number, NUMBER_2,
        "never released before the one released just now"
    );
    assert_eq!(c.number, NUMBER, "free again once its reservation ended");
    assert!(![&a, &b, &c].iter().any(|r| r.shared || r.renewed));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_visits_heartbeat_renews_its_reservation_on_the_same_number(pool: PgPool) {
    let s = pool_of_two(&pool).await;
    let first = reserve(&pool, s, "a", HOLD).await;

    let again = reserve(&pool, s, "a", HOLD).await;

    assert!(again.renewed && !first.renewed);
    assert_eq!(again.number, first.number);
    assert!(again.reserved_until >= first.reserved_until);
    assert_eq!(
        count(&pool, "select count(*) from number_reservations").await,
        1,
        "extended, not a second reservation"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_exhausted_pool_shares_the_number_whose_reservation_ends_soonest(pool: PgPool) {
    let s = pool_of_two(&pool).await;
    let soonest = reserve(&pool, s, "a", HOLD).await;
    reserve(&pool, s, "b", HOLD * 2).await;

    let third = reserve(&pool, s, "c", HOLD).await;

    assert!(third.shared, "{third:?}");
    assert_eq!(third.number, soonest.number);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_pool_of_static_numbers_only_has_nothing_to_reserve(pool: PgPool) {
    let s = create_scenario(
        &pool,
        &ScenarioSettings {
            static_numbers: vec![StaticNumber {
                number: NUMBER.into(),
                marker: Some("billboard".into()),
                source_level_1: None,
                source_level_2: None,
            }],
            ..settings(&[])
        },
    )
    .await;

    let refused = pool::reserve(&pool, s, &visit("a"), HOLD).await;

    match refused {
        Err(IngestError::Field(e)) => assert_eq!(e.code, "empty_pool"),
        other => panic!("expected empty_pool, got {other:?}"),
    }
    assert_eq!(
        count(&pool, "select count(*) from number_reservations").await,
        0
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_reservation_skips_a_number_another_reservation_holds_without_waiting(pool: PgPool) {
    let s = pool_of_two(&pool).await;
    // Another visit's reservation has locked NUMBER and not committed.
    let mut other = pool.begin().await.unwrap();
    sqlx::query("select 1 from scenario_numbers where number = $1 for update")
        .bind(NUMBER)
        .execute(&mut *other)
        .await
        .unwrap();

    let got = tokio::time::timeout(Duration::from_secs(30), reserve(&pool, s, "b", HOLD))
        .await
        .expect("the reservation does not wait for the other");

    assert_eq!(got.number, NUMBER_2);
    assert!(!got.shared);
    other.rollback().await.unwrap();
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_call_to_a_reserved_number_is_attributed_to_the_visit_holding_it(pool: PgPool) {
    let s = scenario(&pool).await;
    reserve(&pool, s, "v1", HOLD).await;

    let unattributed = start_and_unattributed(&pool, start("c1")).await;

    assert_eq!(unattributed, Vec::<Uuid>::new());
    let [visit_id, utm_source, utm_medium, _] = call_visit(&pool, "c1").await;
    assert_eq!(visit_id.as_deref(), Some("v1"));
    assert_eq!(utm_source.as_deref(), Some("spring-sale"));
    assert_eq!(utm_medium.as_deref(), Some("cpc"));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_starts_own_visit_fields_win_over_the_reservations(pool: PgPool) {
    let s = scenario(&pool).await;
    reserve(&pool, s, "v1", HOLD).await;
    let own = StartCall {
        visit: Visit {
            utm_source: Some("newsletter".into()),
            ..Visit::default()
        },
        ..start("c1")
    };

    start_and_unattributed(&pool, own).await;

    let [visit_id, utm_source, utm_medium, _] = call_visit(&pool, "c1").await;
    assert_eq!(utm_source.as_deref(), Some("newsletter"), "the event's own");
    assert_eq!(
        visit_id.as_deref(),
        Some("v1"),
        "the rest from the reservation"
    );
    assert_eq!(utm_medium.as_deref(), Some("cpc"));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_call_is_attributed_by_its_own_time_not_its_arrival(pool: PgPool) {
    let s = scenario(&pool).await;
    reserve(&pool, s, "v1", HOLD).await;
    // The call happened an hour ago: nobody held the number then.
    let earlier = StartCall {
        date: Some((chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339()),
        ..start("c1")
    };

    let unattributed = start_and_unattributed(&pool, earlier).await;

    assert_eq!(unattributed, vec![s], "reported unattributed");
    assert_eq!(call_visit(&pool, "c1").await, [None, None, None, None]);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_call_to_a_static_number_carries_its_fixed_fields(pool: PgPool) {
    create_scenario(
        &pool,
        &ScenarioSettings {
            static_numbers: vec![StaticNumber {
                number: NUMBER.into(),
                marker: Some("billboard".into()),
                source_level_1: Some("offline".into()),
                source_level_2: None,
            }],
            ..settings(&[NUMBER_2])
        },
    )
    .await;

    let unattributed = start_and_unattributed(&pool, start("c1")).await;

    assert_eq!(unattributed, Vec::<Uuid>::new());
    let [visit_id, _, _, marker] = call_visit(&pool, "c1").await;
    assert_eq!(marker.as_deref(), Some("billboard"));
    assert_eq!(visit_id, None, "no visit behind it");
}
