//! The fair claim (`queue::claim`, docs/scheduling.md): round the endpoints
//! with due work, each endpoint's cap and rate, priority classes with their
//! slack, and the round kept right by the trigger and the claims.

use std::collections::HashMap;
use std::time::Duration;

use callhook_core::DeliveryKind;
use callhook_store::calls;
use callhook_store::health::{self, EndpointLimits};
use callhook_store::queue::{self, ClaimLimits};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::*;

/// Two scenarios: `busy` with `n` due during-call deliveries, `other` with one.
async fn busy_and_other(pool: &PgPool, n: usize) -> (Uuid, Uuid) {
    let busy = scenario(pool).await;
    let other = create_scenario(pool, &settings(&[NUMBER_2])).await;
    let starts: Vec<_> = (0..n).map(|i| start(&format!("b{i}"))).collect();
    callhook_store::calls::start_batch(pool, &starts, None, RULES)
        .await
        .unwrap();
    let mut o = start("o1");
    o.callee = phone(NUMBER_2);
    store_start(pool, o).await.unwrap();
    (busy, other)
}

fn by_scenario(claimed: &[queue::Claimed]) -> HashMap<Uuid, usize> {
    let mut n = HashMap::new();
    for c in claimed {
        *n.entry(c.scenario_id.unwrap()).or_default() += 1;
    }
    n
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_claim_takes_every_busy_endpoints_first_delivery_before_any_second(pool: PgPool) {
    let (busy, other) = busy_and_other(&pool, 200).await;
    // Room for two: one each, though the busy one has 200 due ahead.
    let got = claim(&pool, 2, LEASE).await.unwrap();
    let n = by_scenario(&got);
    assert_eq!((n.get(&busy), n.get(&other)), (Some(&1), Some(&1)), "{n:?}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn one_busy_endpoint_alone_takes_every_seat_its_cap_allows(pool: PgPool) {
    scenario(&pool).await;
    let starts: Vec<_> = (0..50).map(|i| start(&format!("b{i}"))).collect();
    callhook_store::calls::start_batch(&pool, &starts, None, RULES)
        .await
        .unwrap();
    let got = queue::claim(
        &pool,
        ClaimLimits {
            limit: 40,
            lease: LEASE,
            endpoint_cap: 1000,
        },
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 40, "work-conserving: no seat left idle");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_claim_takes_no_more_than_an_endpoints_cap_less_what_it_has_in_flight(pool: PgPool) {
    let (busy, other) = busy_and_other(&pool, 50).await;
    let limits = ClaimLimits {
        limit: 100,
        lease: LEASE,
        endpoint_cap: 5,
    };
    let first = queue::claim(&pool, limits).await.unwrap();
    assert_eq!(by_scenario(&first).get(&busy), Some(&5));
    // Those five are still in flight: nothing more for it, the other goes on.
    let mut o = start("o2");
    o.callee = phone(NUMBER_2);
    store_start(&pool, o).await.unwrap();
    let second = queue::claim(&pool, limits).await.unwrap();
    let n = by_scenario(&second);
    assert_eq!((n.get(&busy), n.get(&other)), (None, Some(&1)), "{n:?}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn an_endpoints_own_max_in_flight_wins_over_the_default(pool: PgPool) {
    let (busy, _) = busy_and_other(&pool, 20).await;
    health::set_limits(
        &pool,
        busy,
        DeliveryKind::DuringCall,
        EndpointLimits {
            max_in_flight: Some(2),
            max_per_second: None,
        },
    )
    .await
    .unwrap();
    let got = claim(&pool, 100, LEASE).await.unwrap();
    assert_eq!(by_scenario(&got).get(&busy), Some(&2));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_rate_limited_endpoint_gets_one_delivery_a_slot_and_waits_for_the_next(pool: PgPool) {
    let (busy, _) = busy_and_other(&pool, 20).await;
    health::set_limits(
        &pool,
        busy,
        DeliveryKind::DuringCall,
        EndpointLimits {
            max_in_flight: None,
            max_per_second: Some(0.5),
        },
    )
    .await
    .unwrap();
    let first = claim(&pool, 100, LEASE).await.unwrap();
    assert_eq!(by_scenario(&first).get(&busy), Some(&1));
    // Its next slot is 2 s after this claim (both times are the claim's):
    // the round holds it until then, and the next claim takes nothing.
    let second = claim(&pool, 100, LEASE).await.unwrap();
    assert_eq!(by_scenario(&second).get(&busy), None);
    let slot: f64 = sqlx::query_scalar(
        "select extract(epoch from q.due_at - d.updated_at)::float8
           from endpoint_queue q join deliveries d on d.scenario_id = q.scenario_id and d.kind = q.kind
          where q.scenario_id = $1 and d.lease_token is not null",
    )
    .bind(busy)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        (slot - 2.0).abs() < 1e-3,
        "next slot {slot} s after the claim"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_fresh_delivery_goes_ahead_of_a_retry_due_less_than_its_slack_before_it(pool: PgPool) {
    scenario(&pool).await;
    store_start(&pool, start("retry")).await.unwrap();
    store_start(&pool, start("fresh")).await.unwrap();
    // The retry has been due half a second longer than the fresh one (one
    // statement, one clock): the retry class's slack (1 s) puts it second.
    sqlx::query(
        "update deliveries
            set attempt_count = case call_id when 'retry' then 1 else 0 end,
                next_attempt_at = now() - case call_id when 'retry' then interval '600 milliseconds'
                                                      else interval '100 milliseconds' end
          where call_id in ('retry', 'fresh')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let got = claim(&pool, 1, LEASE).await.unwrap();
    assert_eq!(got[0].call_id.as_deref(), Some("fresh"));
    // A retry due longer than its slack ago goes first: no starving.
    store_start(&pool, start("fresh2")).await.unwrap();
    sqlx::query(
        "update deliveries
            set next_attempt_at = now() - case call_id when 'retry' then interval '5 seconds'
                                                      else interval '0' end
          where call_id in ('retry', 'fresh2')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let got = claim(&pool, 1, LEASE).await.unwrap();
    assert_eq!(got[0].call_id.as_deref(), Some("retry"));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_bulk_requeue_puts_deliveries_in_the_lowest_class(pool: PgPool) {
    let id = scenario(&pool).await;
    let c = started_and_claimed(&pool, "c1").await;
    queue::complete(&pool, &[failed(&c, false)], &health(Default::default()))
        .await
        .unwrap();
    sqlx::query("update deliveries set state = 'failed', next_attempt_at = null where id = $1")
        .bind(c.id)
        .execute(&pool)
        .await
        .unwrap();
    let filter = callhook_store::log::DeliveryFilter {
        scenario_id: Some(id),
        ..Default::default()
    };
    assert_eq!(
        callhook_store::log::retry_matching(&pool, &filter)
            .await
            .unwrap(),
        1
    );
    let class: i16 = sqlx::query_scalar(
        "select delivery_class(kind, attempt_count, requeued) from deliveries where id = $1",
    )
    .bind(c.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(class, 3);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn every_write_that_makes_a_delivery_due_puts_its_endpoint_in_the_round(pool: PgPool) {
    let id = scenario(&pool).await;
    let in_round = |pool: PgPool| async move {
        count(
            &pool,
            "select count(*) from endpoint_queue where kind = 'during_call'",
        )
        .await
    };
    store_start(&pool, start("c1")).await.unwrap();
    assert_eq!(in_round(pool.clone()).await, 1, "an insert");
    // The claim takes it; nothing else is pending: the endpoint stays in the
    // round only for its lease's end (should the process die).
    let c = claim_one(&pool).await;
    assert_eq!(in_round(pool.clone()).await, 1);
    // A failed attempt reschedules it: still in the round.
    queue::complete(&pool, &[failed(&c, false)], &health(Default::default()))
        .await
        .unwrap();
    let due: bool = sqlx::query_scalar(
        "select q.due_at <= d.next_attempt_at from endpoint_queue q
           join deliveries d on d.scenario_id = q.scenario_id and d.kind = q.kind
          where q.scenario_id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(due, "the round is never later than the delivery");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_claim_that_finds_nothing_pending_for_an_endpoint_drops_it_from_the_round(pool: PgPool) {
    scenario(&pool).await;
    let c = started_and_claimed(&pool, "c1").await;
    queue::complete(&pool, &[delivered(&c)], &health(Default::default()))
        .await
        .unwrap();
    // The round still names it (a delivered row does not touch it) until a
    // claim looks: its due time is the lease's end, so make that now.
    sqlx::query("update endpoint_queue set due_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(claim(&pool, 10, LEASE).await.unwrap().is_empty());
    assert_eq!(count(&pool, "select count(*) from endpoint_queue").await, 0);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn two_claims_at_once_take_different_endpoints(pool: PgPool) {
    let (busy, other) = busy_and_other(&pool, 10).await;
    // One claim holds the busy endpoint's turn (its round row locked)…
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("select 1 from endpoint_queue where scenario_id = $1 for update")
        .bind(busy)
        .execute(&mut *holder)
        .await
        .unwrap();
    // …another claims meanwhile without waiting for it: the other endpoint.
    let got = tokio::time::timeout(Duration::from_secs(30), claim(&pool, 10, LEASE))
        .await
        .expect("a claim never waits for another's endpoint")
        .unwrap();
    let n = by_scenario(&got);
    assert_eq!((n.get(&busy), n.get(&other)), (None, Some(&1)), "{n:?}");
    holder.rollback().await.unwrap();
}

/// A hand-off plan (ingest leasing to its own dispatcher) with room for
/// everything but the endpoint's cap.
fn hand_off(endpoint_cap: i32) -> Option<calls::LeasePlan> {
    Some(calls::LeasePlan {
        budget: 1000,
        lease: LEASE,
        endpoint_cap,
    })
}

fn starts(prefix: &str, n: usize) -> Vec<calls::StartCall> {
    (0..n).map(|i| start(&format!("{prefix}{i}"))).collect()
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_start_group_hands_off_no_more_than_its_endpoints_cap_less_what_it_has_in_flight(
    pool: PgPool,
) {
    scenario(&pool).await;
    let first = calls::start_batch(&pool, &starts("a", 3), hand_off(5), RULES)
        .await
        .unwrap();
    assert_eq!(first.work.leased.len(), 3);
    let second = calls::start_batch(&pool, &starts("b", 4), hand_off(5), RULES)
        .await
        .unwrap();
    assert_eq!(
        second.work.leased.len(),
        2,
        "three of five in flight already"
    );
    assert_eq!(
        second.work.queued, 2,
        "the others wait for a claim, due now"
    );
    let leased = "select count(*) from deliveries where lease_token is not null";
    assert_eq!(count(&pool, leased).await, 5);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn two_start_groups_at_once_hand_off_no_more_than_the_cap_together(pool: PgPool) {
    let id = scenario(&pool).await;
    // The first group stops at its insert's foreign-key check, its room
    // counted and its leases written, not committed…
    let holder = lock_scenario_row(&pool, id).await;
    let group = |prefix: &'static str| {
        let pool = pool.clone();
        tokio::spawn(async move {
            calls::start_batch(&pool, &starts(prefix, 4), hand_off(5), RULES)
                .await
                .unwrap()
                .work
                .leased
                .len()
        })
    };
    let a = group("a");
    until_waiting(&pool, 1, &[a.abort_handle()]).await;
    // …while the second counts its room: it waits for the first's commit.
    let b = group("b");
    until_waiting(&pool, 2, &[a.abort_handle(), b.abort_handle()]).await;
    holder.rollback().await.unwrap();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(
        (a, a + b),
        (4, 5),
        "the second leased only what the first left"
    );
    let leased = "select count(*) from deliveries where lease_token is not null";
    assert_eq!(count(&pool, leased).await, 5);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_start_group_for_an_endpoint_at_its_cap_does_not_wait_for_its_lock(pool: PgPool) {
    let id = scenario(&pool).await;
    let full = calls::start_batch(&pool, &starts("a", 3), hand_off(3), RULES)
        .await
        .unwrap();
    assert_eq!(full.work.leased.len(), 3, "the endpoint is at its cap");
    // Another group holds the endpoint's hand-off lock, not yet committed.
    let holder = hold_handoff_lock(&pool, id).await;
    // A group that can lease nothing for it goes on without the lock. (Were it
    // to wait, it would wait until the holder ends, after this timeout.)
    let next = tokio::time::timeout(
        Duration::from_secs(60),
        calls::start_batch(&pool, &starts("b", 2), hand_off(3), RULES),
    )
    .await
    .expect("a group with no room to lease waited for the endpoint's lock")
    .unwrap();
    assert_eq!((next.work.leased.len(), next.work.queued), (0, 2));
    holder.rollback().await.unwrap();
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_start_group_for_an_endpoint_with_room_takes_its_lock(pool: PgPool) {
    let id = scenario(&pool).await;
    // Another group holds the endpoint's hand-off lock, not yet committed.
    let holder = hold_handoff_lock(&pool, id).await;
    // A group that may lease for it waits for that very lock: Postgres shows
    // it waiting (the key the test holds is the one the hand-off takes).
    let group = tokio::spawn({
        let pool = pool.clone();
        async move { calls::start_batch(&pool, &starts("a", 2), hand_off(3), RULES).await }
    });
    loop {
        let waiting: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_locks
                             where locktype = 'advisory' and not granted
                               and ((classid::bigint << 32) | objid::bigint) = handoff_lock_key($1))",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting {
            break;
        }
        assert!(
            !group.is_finished(),
            "the group went on without the endpoint's lock"
        );
        tokio::task::yield_now().await;
    }
    holder.rollback().await.unwrap();
    let done = group.await.unwrap().unwrap();
    assert_eq!(
        done.work.leased.len(),
        2,
        "granted the lock, it leases both"
    );
}

/// A transaction holding an endpoint's hand-off lock, as a start group
/// leasing for it does until its commit.
async fn hold_handoff_lock(
    pool: &PgPool,
    endpoint: Uuid,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock(handoff_lock_key($1))")
        .bind(endpoint)
        .execute(&mut *holder)
        .await
        .unwrap();
    holder
}
