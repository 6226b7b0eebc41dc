//! Storage for a year of calls: Postgres over TLS, upkeep by one leader,
//! several processes sharing the work.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;

use crate::crash::{create_scenario, ingest, wait_all_delivered, CALLS};
use crate::helpers::*;
use crate::process::*;

/// A CA of the test's own and a server certificate it signed for
/// 127.0.0.1: (CA PEM, server certificate PEM, server key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "callhook test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), server.pem(), key.serialize_pem())
}

#[tokio::test]
async fn postgres_over_tls_with_verify_full_and_a_wrong_ca_fails_start_up_saying_so() {
    init_logs();
    let (ca, cert, key) = certificates();
    let cluster = TempCluster::start_tls(&cert, &key);
    let ca_path = cluster.dir().join("test-ca.crt");
    std::fs::write(&ca_path, ca).unwrap();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
        cluster.port,
        ca_path.display()
    );

    // The README's try-it flow, over TLS.
    let mut rx = Receiver::ok().await;
    let server = ServerProcess::start(&url, &[]).await;
    let http = reqwest::Client::new();
    let created = http
        .post(server.url("/api/v1/scenarios"))
        .bearer_auth(ADMIN)
        .json(
            &json!({"name": "Main site", "numbers": ["+7 (800) 555-22-33"],
                      "during_call_url": rx.url("/during"), "after_call_url": rx.url("/after")}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let started = http
        .post(server.url("/api/v1/calls"))
        .bearer_auth(INGEST)
        .json(&page_call("313"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status().as_u16(), 202);
    let ended = http
        .post(server.url("/api/v1/calls/313/end"))
        .bearer_auth(INGEST)
        .json(
            &json!({"status": "ANSWER", "duration": 20, "link": "https://rec.example.com/313.mp3"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status().as_u16(), 202);
    assert_eq!(rx.next(Duration::from_secs(20)).await.path, "/during");
    assert_eq!(rx.next(Duration::from_secs(20)).await.path, "/after");
    // Its connections are encrypted.
    let plain = sqlx::PgPool::connect(&format!("{}?sslmode=disable", cluster.url()))
        .await
        .unwrap();
    let encrypted: i64 = sqlx::query_scalar(
        "select count(*) from pg_stat_ssl s join pg_stat_activity a using (pid)
          where s.ssl and a.pid <> pg_backend_pid()",
    )
    .fetch_one(&plain)
    .await
    .unwrap();
    assert!(encrypted >= 1, "callhook's connections use TLS");
    plain.close().await;
    server.kill().await;

    // A CA that did not sign the server's certificate: a start-up error
    // that says what to check, at once (no retrying for CALLHOOK_DB_WAIT).
    let (other_ca, _, _) = certificates();
    let wrong = cluster.dir().join("other-ca.crt");
    std::fs::write(&wrong, other_ca).unwrap();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
        cluster.port,
        wrong.display()
    );
    let log = cluster.dir().join("callhook-wrong-ca.log");
    let t = Instant::now();
    let refused =
        ServerProcess::try_start_logging(&url, &[("CALLHOOK_DB_WAIT", "60s")], &log).await;
    assert!(
        refused.is_none(),
        "callhook must not start with a certificate that does not verify"
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "no retrying: {:?}",
        t.elapsed()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("could not set up TLS with the database"),
        "{text}"
    );
    assert!(text.contains("sslrootcert"), "{text}");
}

/// A counter's value on a process's `/metrics` (0 when absent).
async fn metric(http: &reqwest::Client, server: &ServerProcess, name: &str) -> f64 {
    let text = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(&text, name)
}

const DELIVERED: &str = r#"callhook_deliveries_total{kind="during_call",outcome="delivered"}"#;

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn one_api_and_two_dispatchers_each_send_a_fair_share(pool: PgPool) {
    let db = database_url_of(&pool);
    let (hook, tally) = counting_receiver(Duration::from_millis(5)).await;
    let http = reqwest::Client::new();
    let api = ServerProcess::start(&db, &[("CALLHOOK_ROLE", "api")]).await;
    let dispatcher = [
        ("CALLHOOK_ROLE", "dispatcher"),
        ("CALLHOOK_CONCURRENCY", "8"),
    ];
    let d1 = ServerProcess::start(&db, &dispatcher).await;
    let d2 = ServerProcess::start(&db, &dispatcher).await;
    create_scenario(&http, &api, &hook).await;
    ingest(&http, &api.url(""), 0..CALLS).await;
    wait_all_delivered(&pool, &tally, CALLS).await;
    assert_eq!(
        tally.duplicates(),
        (0, 0),
        "none sent twice in normal operation"
    );
    let (n1, n2) = (
        metric(&http, &d1, DELIVERED).await,
        metric(&http, &d2, DELIVERED).await,
    );
    assert_eq!(
        n1 + n2,
        CALLS as f64,
        "every delivery counted by the dispatcher that sent it"
    );
    for (name, n) in [("first", n1), ("second", n2)] {
        assert!(
            n >= CALLS as f64 / 4.0,
            "the {name} dispatcher sent {n} of {CALLS}"
        );
    }
    eprintln!("shares: {n1} and {n2} of {CALLS}");
    for p in [api, d1, d2] {
        p.kill().await;
    }
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn sigkill_of_one_dispatcher_of_two_under_load_loses_nothing(pool: PgPool) {
    let db = database_url_of(&pool);
    let (hook, tally) = counting_receiver(Duration::from_millis(20)).await;
    let http = reqwest::Client::new();
    let api = ServerProcess::start(&db, &[("CALLHOOK_ROLE", "api")]).await;
    let dispatcher = [
        ("CALLHOOK_ROLE", "dispatcher"),
        ("CALLHOOK_CONCURRENCY", "8"),
    ];
    let d1 = ServerProcess::start(&db, &dispatcher).await;
    let d2 = ServerProcess::start(&db, &dispatcher).await;
    create_scenario(&http, &api, &hook).await;
    ingest(&http, &api.url(""), 0..CALLS).await;
    eventually(Duration::from_secs(30), "a third delivered", || async {
        (tally.total() >= CALLS / 3).then_some(())
    })
    .await;
    d1.kill().await;
    // The survivor takes over the killed one's leases when they run out.
    wait_all_delivered(&pool, &tally, CALLS).await;
    let (_, extra) = tally.duplicates();
    assert!(
        extra <= 8,
        "duplicates ({extra}) exceed the requests in flight at the kill"
    );
    api.kill().await;
    d2.kill().await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn upkeep_runs_in_one_process_at_a_time_and_moves_when_its_leader_dies(pool: PgPool) {
    const LEADER: &str = "callhook_upkeep_leader";
    let db = database_url_of(&pool);
    let http = reqwest::Client::new();
    let a = ServerProcess::start(&db, &[]).await;
    let b = ServerProcess::start(&db, &[("CALLHOOK_ROLE", "dispatcher")]).await;
    let (leader, other) = eventually(Duration::from_secs(40), "one upkeep leader", || async {
        let la = metric(&http, &a, LEADER).await;
        let lb = metric(&http, &b, LEADER).await;
        match (la, lb) {
            (1.0, 0.0) => Some(("a", "b")),
            (0.0, 1.0) => Some(("b", "a")),
            (1.0, 1.0) => panic!("two upkeep leaders at once"),
            _ => None,
        }
    })
    .await;
    // The lock is "callhook" as a number: classid 0x63616c6c, objid 0x686f6f6b.
    let holders: i64 = sqlx::query_scalar(
        "select count(*) from pg_locks where locktype = 'advisory' and granted
            and classid = 1667329132 and objid = 1752133483",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(holders, 1, "one session holds the upkeep lock");
    // The leader dies; the other takes over within a minute.
    let (dead, survivor) = if leader == "a" { (a, b) } else { (b, a) };
    dead.kill().await;
    let took_over = std::time::Instant::now();
    eventually(
        Duration::from_secs(60),
        &format!("{other} to lead"),
        || async { (metric(&http, &survivor, LEADER).await == 1.0).then_some(()) },
    )
    .await;
    eprintln!("upkeep moved to {other} in {:?}", took_over.elapsed());
    survivor.kill().await;
}
