//! Storage for a year of calls: Postgres over TLS, upkeep by one leader,
//! several processes sharing the work.

use std::time::{Duration, Instant};

use serde_json::json;

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
