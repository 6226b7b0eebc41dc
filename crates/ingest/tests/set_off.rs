//! What ingest does once a start has committed (crate docs, `Outlet::set_off`,
//! `Handoff`): a new delivery goes to this process's dispatcher leased
//! while it has room, back to the queue due now if it can no longer take
//! it, and each start of a group is answered with its own result; and how
//! the group commit cuts its groups.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use callhook_core::{FieldError, PhoneNumber, StoredSecret, Visit, WebhookUrl};
use callhook_ingest::{Ingest, IngestConfig};
use callhook_store::calls::{DeliveryRef, IngestError, Ingested, StartCall};
use callhook_store::scenarios::{self, ScenarioSettings};
use sqlx::PgPool;
use uuid::Uuid;

const NUMBER: &str = "78005552233";
const LEASE: Duration = Duration::from_secs(60);

fn phone(digits: &str) -> PhoneNumber {
    PhoneNumber::parse(digits, "number").unwrap()
}

/// A scenario with a during-call webhook and [`NUMBER`].
async fn scenario(pool: &PgPool) {
    let settings = ScenarioSettings {
        during_call_url: Some(WebhookUrl::from_trusted(
            "https://receiver.test/during".into(),
        )),
        ..ScenarioSettings::named("Ingest", vec![phone(NUMBER)])
    };
    scenarios::create(
        pool,
        uuid::Uuid::now_v7(),
        &settings,
        &StoredSecret::new("whsec_test".into()),
    )
    .await
    .unwrap();
}

fn start(id: &str, callee: &str) -> StartCall {
    StartCall {
        id: id.into(),
        caller: phone("79990009911"),
        callee: phone(callee),
        date: None,
        scenario_id: None,
        visit: Visit::default(),
    }
}

fn created_one(result: Result<Ingested, IngestError>) -> DeliveryRef {
    match result {
        Ok(Ingested::Created(mut d)) if d.len() == 1 => d.pop().unwrap(),
        other => panic!("expected one delivery created, got {other:?}"),
    }
}

/// A delivery's lease token, and whether claims would take it now.
async fn lease_and_due(pool: &PgPool, id: Uuid) -> (Option<Uuid>, bool) {
    sqlx::query_as(
        "select lease_token, coalesce(next_attempt_at <= now(), false) from deliveries where id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_start_is_stored_leased_and_handed_to_a_dispatcher_with_room(pool: PgPool) {
    scenario(&pool).await;
    let (handoff, inbox) = callhook_dispatch::handoff(4, LEASE, 16);
    let ingest = Ingest::new(pool.clone(), Some(handoff), IngestConfig::default());

    let d = created_one(ingest.start(start("c1", NUMBER)).await);

    // Handed over before the start was answered.
    let (handed, _sending) = inbox.try_take().expect("handed to the dispatcher");
    assert!(handed.from_ingest);
    assert_eq!(handed.row.id, d.id);
    let (lease, due) = lease_and_due(&pool, d.id).await;
    assert_eq!(
        lease,
        Some(handed.row.lease_token),
        "stored under the lease it was handed with"
    );
    assert!(!due, "no claim takes it while the lease runs");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_start_is_stored_due_for_claims_when_the_dispatcher_has_stopped(pool: PgPool) {
    scenario(&pool).await;
    let (handoff, inbox) = callhook_dispatch::handoff(4, LEASE, 16);
    inbox.seats.close();
    let ingest = Ingest::new(pool.clone(), Some(handoff), IngestConfig::default());

    let d = created_one(ingest.start(start("c1", NUMBER)).await);

    assert!(inbox.try_take().is_none(), "nothing handed over");
    assert_eq!(lease_and_due(&pool, d.id).await, (None, true));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_leased_start_the_dispatcher_can_no_longer_take_goes_back_due_now(pool: PgPool) {
    scenario(&pool).await;
    let (handoff, inbox) = callhook_dispatch::handoff(4, LEASE, 16);
    // The dispatcher went away between the lease and the hand-over.
    drop(inbox);
    let ingest = Ingest::new(pool.clone(), Some(handoff), IngestConfig::default());

    let d = created_one(ingest.start(start("c1", NUMBER)).await);

    assert_eq!(lease_and_due(&pool, d.id).await, (None, true), "released");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn starts_sent_together_are_each_answered_with_their_own_result(pool: PgPool) {
    scenario(&pool).await;
    let ingest = Ingest::new(pool.clone(), None, IngestConfig::default());

    let (a, unknown, b) = tokio::join!(
        ingest.start(start("c1", NUMBER)),
        ingest.start(start("c2", "78009990000")),
        ingest.start(start("c3", NUMBER)),
    );

    created_one(a);
    created_one(b);
    match unknown {
        Err(IngestError::Field(FieldError { code, .. })) => assert_eq!(code, "unknown_number"),
        other => panic!("expected unknown_number, got {other:?}"),
    }
    let calls: Vec<String> = sqlx::query_scalar("select id from calls order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(calls, ["c1", "c3"]);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn after_a_large_group_the_next_is_cut_when_it_commits_and_takes_every_start_that_waited(
    pool: PgPool,
) {
    scenario(&pool).await;
    let (handoff, _inbox) = callhook_dispatch::handoff(4, LEASE, 16);
    let ingest = Ingest::new(pool.clone(), Some(handoff), IngestConfig::default());
    let scenario_id: Uuid = sqlx::query_scalar("select id from scenarios")
        .fetch_one(&pool)
        .await
        .unwrap();
    // The test holds the endpoint's hand-off lock: the first group stops
    // inside its statements, waiting for it. It is large (four starts, queued
    // before the group commit's task runs: a group of that size keeps its
    // turn until it commits; a smaller one would let the next run beside it).
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock(handoff_lock_key($1))")
        .bind(scenario_id)
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut first: Vec<_> = ["a1", "a2", "a3", "a4"]
        .into_iter()
        .map(|id| Box::pin(ingest.start(start(id, NUMBER))))
        .collect();
    for s in &mut first {
        queue(s.as_mut()).await;
    }
    loop {
        let waiting: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_locks
                             where locktype = 'advisory' and not granted
                               and ((classid::bigint << 32) | objid::bigint) = handoff_lock_key($1))",
        )
        .bind(scenario_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting {
            break;
        }
        tokio::task::yield_now().await;
    }
    // Three more starts join the queue (each polled once: it is queued, then
    // waits for its answer), while the first group runs its statements.
    let mut later: Vec<_> = ["b", "c", "d"]
        .into_iter()
        .map(|id| Box::pin(ingest.start(start(id, NUMBER))))
        .collect();
    for s in &mut later {
        queue(s.as_mut()).await;
    }
    let queued_by: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(&pool)
        .await
        .unwrap();
    holder.rollback().await.unwrap();
    for s in first.into_iter().chain(later) {
        created_one(s.await);
    }
    // They went in one transaction, begun after they were all queued (a
    // committer free while the first group ran would have taken "b" alone,
    // or all three to wait for the lock beside it).
    let rows: Vec<(String, String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("select id, xmin::text, created_at from calls order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let (a, later) = rows.split_at(4);
    let xmins = |rows: &[(String, String, _)]| {
        rows.iter()
            .map(|r| r.1.clone())
            .collect::<std::collections::HashSet<_>>()
    };
    assert_eq!(xmins(a).len(), 1, "a1 to a4 in one group: {rows:?}");
    assert_eq!(xmins(later).len(), 1, "b, c and d in one group: {rows:?}");
    assert_ne!(a[0].1, later[0].1, "two groups: {rows:?}");
    assert!(
        later.iter().all(|r| r.2 > queued_by),
        "the second group began after its starts were queued: {rows:?}"
    );
}

/// Polls a start once: it is queued, and waits for its answer.
async fn queue(
    start: std::pin::Pin<&mut (impl Future<Output = Result<Ingested, IngestError>> + ?Sized)>,
) {
    let mut start = start;
    let polled = std::future::poll_fn(|cx| Poll::Ready(start.as_mut().poll(cx))).await;
    assert!(
        polled.is_pending(),
        "answered before the first group committed"
    );
}
