//! Crash safety: SIGKILL, several dispatchers, Postgres restarted mid-load.

use std::time::Duration;

use callhook_dispatch::seats::UNRECORDED_PER_SLOT;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;
use crate::process::*;

pub(crate) const CALLS: usize = 500;

pub(crate) async fn create_scenario(http: &reqwest::Client, server: &ServerProcess, hook: &str) {
    let r = http
        .post(server.url("/api/v1/scenarios"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "crash", "numbers": ["78005552233"], "during_call_url": hook}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Sends calls `range` until each is acknowledged with a 2xx (a 503 or a
/// refused connection is retried, as a telephony client would), returning
/// how many answers were 503.
pub(crate) async fn ingest(
    http: &reqwest::Client,
    base: &str,
    range: std::ops::Range<usize>,
) -> usize {
    use futures::StreamExt;
    let unavailable = std::sync::atomic::AtomicUsize::new(0);
    futures::stream::iter(range)
        .for_each_concurrent(16, |i| {
            let unavailable = &unavailable;
            async move {
                let body = json!({"id": format!("c{i}"), "caller": "79990009911", "callee": "78005552233"});
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                loop {
                    match http.post(format!("{base}/api/v1/calls")).bearer_auth(INGEST).json(&body).send().await {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) if r.status() == 503 => {
                            unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok(r) => panic!("call c{i}: unexpected {}", r.status()),
                        Err(_) => {}
                    }
                    assert!(std::time::Instant::now() < deadline, "call c{i} never acknowledged");
                    // Not a wait: a telephony client's retry pacing.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .await;
    unavailable.into_inner()
}

pub(crate) async fn wait_all_delivered(pool: &PgPool, tally: &Tally, n: usize) {
    eventually(
        Duration::from_secs(90),
        &format!("{n} distinct calls at the receiver"),
        || async { (tally.distinct() >= n).then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "every delivery recorded as delivered",
        || async {
            let left: i64 =
                sqlx::query_scalar("select count(*) from deliveries where state <> 'delivered'")
                    .fetch_one(pool)
                    .await
                    .ok()?;
            (left == 0).then_some(())
        },
    )
    .await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn sigkill_mid_delivery_loses_nothing(pool: PgPool) {
    let db = database_url_of(&pool);
    // The receiver answers a third of the calls, then holds the rest until
    // the test opens it: the kill comes while work is left, on any machine.
    let (hook, tally, gate) = gated_counting_receiver(Duration::from_millis(20), CALLS / 3).await;
    let http = reqwest::Client::new();
    let env = [
        ("CALLHOOK_CONCURRENCY", "16"),
        ("CALLHOOK_NO_MIGRATE", "true"),
    ];
    let server = ServerProcess::start(&db, &env).await;
    create_scenario(&http, &server, &hook).await;
    ingest(&http, &server.url(""), 0..CALLS).await;
    eventually(
        Duration::from_secs(30),
        "a third of the calls answered",
        || async { (tally.total() >= CALLS / 3).then_some(()) },
    )
    .await;
    server.kill().await;
    let at_kill = tally.total();
    assert!(
        at_kill < CALLS,
        "the kill came while work was left ({at_kill} of {CALLS})"
    );

    gate.open();
    let server = ServerProcess::start(&db, &env).await;
    wait_all_delivered(&pool, &tally, CALLS).await;
    let (dup_calls, extra) = tally.duplicates();
    // What a crash can send twice: the deliveries sent and not yet recorded.
    let bound = 16 * UNRECORDED_PER_SLOT;
    assert!(extra <= bound, "duplicates ({extra} over {dup_calls} calls) exceed the deliveries sent and unrecorded at the kill (≤ {bound})");
    // Stop the children before the test database is dropped.
    server.kill().await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn sigkill_one_of_two_dispatchers_loses_nothing(pool: PgPool) {
    let db = database_url_of(&pool);
    let (hook, tally, gate) = gated_counting_receiver(Duration::from_millis(20), CALLS / 3).await;
    let http = reqwest::Client::new();
    // Requests held at the gate outlast neither the request timeout nor
    // the lease, however slowly the machine reaches the kill: a held
    // request timing out (and sent again) would count as a duplicate the
    // kill did not cause. B's leases run out 12 s after the kill.
    let patient = [
        ("CALLHOOK_REQUEST_TIMEOUT", "10s"),
        ("CALLHOOK_LEASE", "12s"),
    ];
    let env = [
        ("CALLHOOK_CONCURRENCY", "8"),
        ("CALLHOOK_NO_MIGRATE", "true"),
        patient[0],
        patient[1],
    ];
    let a = ServerProcess::start(&db, &env).await;
    let b = ServerProcess::start(
        &db,
        &[
            ("CALLHOOK_CONCURRENCY", "8"),
            ("CALLHOOK_ROLE", "dispatcher"),
            patient[0],
            patient[1],
        ],
    )
    .await;
    create_scenario(&http, &a, &hook).await;
    ingest(&http, &a.url(""), 0..CALLS).await;
    eventually(
        Duration::from_secs(30),
        "a third of the calls answered",
        || async { (tally.total() >= CALLS / 3).then_some(()) },
    )
    .await;
    b.kill().await;
    gate.open();
    let b = ServerProcess::start(
        &db,
        &[
            ("CALLHOOK_CONCURRENCY", "8"),
            ("CALLHOOK_ROLE", "dispatcher"),
            patient[0],
            patient[1],
        ],
    )
    .await;
    wait_all_delivered(&pool, &tally, CALLS).await;
    let (_, extra) = tally.duplicates();
    let bound = 8 * UNRECORDED_PER_SLOT;
    assert!(
        extra <= bound,
        "duplicates ({extra}) exceed the deliveries sent and unrecorded at the kill (≤ {bound})"
    );
    a.kill().await;
    b.kill().await;
}

#[tokio::test]
async fn postgres_restart_mid_load_loses_nothing_acknowledged() {
    init_logs();
    let cluster = TempCluster::start();
    let (hook, tally) = counting_receiver(Duration::from_millis(5)).await;
    let http = reqwest::Client::new();
    let server = ServerProcess::start(
        &cluster.url(),
        &[
            ("CALLHOOK_CONCURRENCY", "16"),
            ("CALLHOOK_DB_ACQUIRE_TIMEOUT", "2s"),
        ],
    )
    .await;
    create_scenario(&http, &server, &hook).await;

    ingest(&http, &server.url(""), 0..200).await;
    cluster.stop();
    // While the database is down, ingest answers 503 with Retry-After (not 500).
    let r = http
        .post(server.url("/api/v1/calls"))
        .bearer_auth(INGEST)
        .json(&json!({"id": "down", "caller": "79990009911", "callee": "78005552233"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    // Twenty at once share group commits: every one is a prompt 503 with
    // Retry-After (a failed group's starts are not retried one pool timeout
    // after another until the request timeout answers 408).
    let answers = futures::future::join_all((0..20).map(|i| {
        let (http, url) = (http.clone(), server.url("/api/v1/calls"));
        async move {
            let r = http
                .post(url)
                .bearer_auth(INGEST)
                .json(&json!({"id": format!("down-{i}"), "caller": "79990009911", "callee": "78005552233"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.headers().contains_key("retry-after"))
        }
    }))
    .await;
    assert!(
        answers.iter().all(|a| *a == (503, true)),
        "every start a 503 with Retry-After: {answers:?}"
    );
    let (readyz, _) = (
        http.get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        (),
    );
    assert_eq!(readyz, 503);
    cluster.start_again();
    ingest(&http, &server.url(""), 200..400).await;

    let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    wait_all_delivered(&pool, &tally, 400).await;
    let (_, extra) = tally.duplicates();
    let bound = 16 * UNRECORDED_PER_SLOT;
    assert!(
        extra <= bound,
        "duplicates ({extra}) exceed the deliveries sent and unrecorded at the restart (≤ {bound})"
    );
    assert_eq!(server.terminate().await.code(), Some(0), "SIGTERM exits 0");
}
