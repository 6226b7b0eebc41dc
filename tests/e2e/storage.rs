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

/// One `--role api` and two `--role dispatcher` processes (8 workers
/// each) on the test's database, a scenario sending to a counting receiver
/// that answers after `delay` (the first `allowed` requests; the rest when
/// the test opens the gate), and every call of the test ingested.
async fn api_and_two_dispatchers(
    pool: &PgPool,
    delay: Duration,
    allowed: usize,
    (lease, request_timeout): (&str, &str),
) -> (reqwest::Client, Tally, Gate, [ServerProcess; 3]) {
    let db = database_url_of(pool);
    let (hook, tally, gate) = gated_counting_receiver(delay, allowed).await;
    let http = reqwest::Client::new();
    let api = ServerProcess::start(&db, &[("CALLHOOK_ROLE", "api")]).await;
    let dispatcher = [
        ("CALLHOOK_ROLE", "dispatcher"),
        ("CALLHOOK_CONCURRENCY", "8"),
        ("CALLHOOK_LEASE", lease),
        ("CALLHOOK_REQUEST_TIMEOUT", request_timeout),
    ];
    let d1 = ServerProcess::start(&db, &dispatcher).await;
    let d2 = ServerProcess::start(&db, &dispatcher).await;
    create_scenario(&http, &api, &hook).await;
    ingest(&http, &api.url(""), 0..CALLS).await;
    (http, tally, gate, [api, d1, d2])
}

const DELIVERED: &str = r#"callhook_deliveries_total{kind="during_call",outcome="delivered"}"#;

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn one_api_and_two_dispatchers_each_send_a_fair_share(pool: PgPool) {
    // The receiver answers nothing until 9 requests are in flight at once:
    // more than one dispatcher's 8 workers, so both are sending. Then it
    // answers everything. The lease and the request timeout outlast any
    // hold, so nothing is taken over (and sent twice) however long it takes.
    let (http, tally, gate, [api, d1, d2]) =
        api_and_two_dispatchers(&pool, Duration::from_millis(5), 0, ("120s", "60s")).await;
    eventually(
        Duration::from_secs(30),
        "9 requests in flight at once",
        || async { (tally.total() >= 9).then_some(()) },
    )
    .await;
    gate.open();
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
        assert!(n >= 1.0, "the {name} dispatcher sent {n} of {CALLS}");
    }
    eprintln!("shares: {n1} and {n2} of {CALLS}");
    for p in [api, d1, d2] {
        p.kill().await;
    }
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn sigkill_of_one_dispatcher_of_two_under_load_loses_nothing(pool: PgPool) {
    // The receiver answers a third of the calls, then holds the rest until
    // the kill: it comes while work is left, on any machine.
    let (_, tally, gate, [api, d1, d2]) =
        api_and_two_dispatchers(&pool, Duration::from_millis(20), CALLS / 3, ("3s", "2s")).await;
    eventually(Duration::from_secs(30), "a third answered", || async {
        (tally.total() >= CALLS / 3).then_some(())
    })
    .await;
    d1.kill().await;
    gate.open();
    // The survivor takes over the killed one's leases when they run out.
    wait_all_delivered(&pool, &tally, CALLS).await;
    let (_, extra) = tally.duplicates();
    // What a crash can send twice: the deliveries sent and not yet recorded.
    let bound = 8 * callhook_dispatch::seats::UNRECORDED_PER_SLOT;
    assert!(
        extra <= bound,
        "duplicates ({extra}) exceed the deliveries sent and unrecorded at the kill (≤ {bound})"
    );
    api.kill().await;
    d2.kill().await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn upkeep_runs_in_one_process_at_a_time_and_moves_when_its_leader_dies(pool: PgPool) {
    const LEADER: &str = "callhook_upkeep_leader";
    let db = database_url_of(&pool);
    let http = reqwest::Client::new();
    // Their logs, to say why should no leader appear.
    let log = |name: &str| {
        std::env::temp_dir().join(format!("callhook-upkeep-{}-{name}.log", std::process::id()))
    };
    let (log_a, log_b) = (log("a"), log("b"));
    let verbose = ("RUST_LOG", "info,callhook=debug,sqlx=warn");
    let a = ServerProcess::start_logging(&db, &[verbose], &log_a).await;
    let b = ServerProcess::start_logging(&db, &[("CALLHOOK_ROLE", "dispatcher"), verbose], &log_b)
        .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let (leader, other) = loop {
        let la = metric(&http, &a, LEADER).await;
        let lb = metric(&http, &b, LEADER).await;
        match (la, lb) {
            (1.0, 0.0) => break ("a", "b"),
            (0.0, 1.0) => break ("b", "a"),
            (1.0, 1.0) => panic!("two upkeep leaders at once"),
            _ => {}
        }
        if Instant::now() > deadline {
            let tail = |p: &std::path::Path| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            panic!(
                "no upkeep leader after 40 s ({la}, {lb}); a's log:\n{}\nb's log:\n{}",
                tail(&log_a),
                tail(&log_b)
            );
        }
        // Not a wait for the system: the poll interval of a check that reads state.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The lock is "callhook" as a number: classid 0x63616c6c, objid 0x686f6f6b.
    let holders: i64 = sqlx::query_scalar(
        "select count(*) from pg_locks where locktype = 'advisory' and granted
            and classid = 1667329132 and objid = 1752133483
            and database = (select oid from pg_database where datname = current_database())",
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

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn retention_of_a_day_of_attempts_is_a_partition_drop(pool: PgPool) {
    use callhook_store::upkeep;
    let today = chrono::Utc::now().date_naive();
    let old_day = today - chrono::Duration::days(40);
    upkeep::create_attempt_partitions(&pool, old_day, 1)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "insert into scenarios (id, name, signing_secret)
              values ('00000000-0000-7000-8000-000000000001', 's', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
         insert into calls (id, scenario_id, caller, callee, started_at, created_at)
              values ('old', '00000000-0000-7000-8000-000000000001', '79990009911', '78005552233', '{old_day} 12:00+00', '{old_day} 12:00+00'),
                     ('new', '00000000-0000-7000-8000-000000000001', '79990009911', '78005552233', now(), now());
         insert into deliveries (id, call_id, scenario_id, kind, payload, state, created_at, delivered_at)
              values ('00000000-0000-7000-8000-0000000000d1', 'old', '00000000-0000-7000-8000-000000000001', 'during_call', '{{}}', 'delivered', '{old_day} 12:00+00', '{old_day} 12:00+00'),
                     ('00000000-0000-7000-8000-0000000000d2', 'new', '00000000-0000-7000-8000-000000000001', 'during_call', '{{}}', 'delivered', now(), now());
         insert into delivery_attempts (delivery_id, attempt, url, started_at, duration_ms, response_status)
              values ('00000000-0000-7000-8000-0000000000d1', 1, 'http://x', '{old_day} 12:00+00', 5, 200),
                     ('00000000-0000-7000-8000-0000000000d2', 1, 'http://x', now(), 5, 200);"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let partition = format!("delivery_attempts_{}", old_day.format("%Y%m%d"));
    let rows_there: i64 = sqlx::query_scalar(&format!("select count(*) from {partition}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows_there, 1, "the old attempt sits in its day's partition");

    callhook::upkeep::retention(&pool, 30, &tokio_util::sync::CancellationToken::new()).await;

    let exists: Option<String> = sqlx::query_scalar("select to_regclass($1)::text")
        .bind(&partition)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(exists, None, "the day's partition was dropped");
    let left: Vec<String> = sqlx::query_scalar(
        "select d.call_id from delivery_attempts a join deliveries d on d.id = a.delivery_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(left, vec!["new".to_owned()]);
    let calls: Vec<String> = sqlx::query_scalar("select id from calls")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        calls,
        vec!["new".to_owned()],
        "the old call and delivery went too"
    );
    // Today and a week ahead are ready.
    let days = upkeep::attempt_partitions(&pool).await.unwrap();
    assert!(
        days.contains(&today) && days.contains(&(today + chrono::Duration::days(7))),
        "{days:?}"
    );
}

#[sqlx::test(migrations = false)]
async fn a_round_1_database_keeps_every_attempt_through_the_partitioning(pool: PgPool) {
    use sqlx::migrate::Migrator;
    let all = &callhook_store::MIGRATOR;
    let before_partitioning = Migrator {
        migrations: all
            .migrations
            .iter()
            .filter(|m| m.version < 20261201000003)
            .cloned()
            .collect::<Vec<_>>()
            .into(),
        ..Migrator::DEFAULT
    };
    before_partitioning.run(&pool).await.unwrap();
    sqlx::raw_sql(
        "insert into scenarios (id, name, signing_secret)
              values ('00000000-0000-7000-8000-000000000001', 's', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
         insert into calls (id, scenario_id, caller, callee, started_at)
              select 'c' || g, '00000000-0000-7000-8000-000000000001', '79990009911', '78005552233', now()
                from generate_series(1, 300) g;
         insert into deliveries (id, call_id, scenario_id, kind, payload, state)
              select gen_random_uuid(), 'c' || g, '00000000-0000-7000-8000-000000000001', 'during_call', '{}', 'delivered'
                from generate_series(1, 300) g;
         insert into delivery_attempts (delivery_id, attempt, url, started_at, duration_ms, response_status)
              select d.id, a, 'http://x', now() - (abs(hashtext(d.call_id)) % 20) * interval '1 day', 5, 200
                from deliveries d, generate_series(1, 3) a;
         insert into delivery_attempts (scenario_id, kind, is_test, attempt, url, started_at, duration_ms, error)
              values ('00000000-0000-7000-8000-000000000001', 'after_call', true, 1, 'http://x', now(), 3, 'connect');",
    )
    .execute(&pool)
    .await
    .unwrap();
    let snapshot = "select coalesce(sum(id), 0)::bigint, count(*) from delivery_attempts";
    let before: (i64, i64) = sqlx::query_as(snapshot).fetch_one(&pool).await.unwrap();
    let log_before: i64 = sqlx::query_scalar("select count(*) from delivery_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(before.1, 901);

    all.run(&pool).await.unwrap();

    let partitioned: bool = sqlx::query_scalar(
        "select exists (select 1 from pg_partitioned_table where partrelid = 'delivery_attempts'::regclass)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(partitioned);
    let after: (i64, i64) = sqlx::query_as(snapshot).fetch_one(&pool).await.unwrap();
    assert_eq!(after, before, "every attempt kept, with its id");
    let in_default: i64 = sqlx::query_scalar("select count(*) from delivery_attempts_default")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        in_default, 0,
        "each old attempt went to its day's partition"
    );
    let log_after: i64 = sqlx::query_scalar("select count(*) from delivery_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        log_after, log_before,
        "delivery_log still shows every attempt"
    );
    // New attempts continue the numbering.
    let next: i64 = sqlx::query_scalar(
        "insert into delivery_attempts (delivery_id, attempt, url, started_at, duration_ms)
         select id, 4, 'http://x', now(), 1 from deliveries limit 1 returning id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let max_before: i64 =
        sqlx::query_scalar("select max(id) from delivery_attempts where id <> $1")
            .bind(next)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(next > max_before);
}
