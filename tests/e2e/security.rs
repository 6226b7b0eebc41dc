//! Security: egress that cannot be bent by the environment.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::process::*;

const WAIT: Duration = Duration::from_secs(20);

async fn scenario_and_call(http: &reqwest::Client, server: &ServerProcess, url: &str) {
    let r = http
        .post(server.url("/api/v1/scenarios"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Main", "numbers": ["78005552233"], "during_call_url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = http
        .post(server.url("/api/v1/calls"))
        .bearer_auth(INGEST)
        .json(&page_call("1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn proxy_environment_variables_are_ignored(pool: sqlx::PgPool) {
    let mut rx = Receiver::ok().await;
    let mut capture = Receiver::ok().await;
    let proxy = capture.url("");
    let env: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .into_iter()
    .map(|k| (k, proxy.as_str()))
    .chain([("NO_PROXY", ""), ("no_proxy", "")])
    .collect();
    let server = ServerProcess::start(&database_url_of(&pool), &env).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    scenario_and_call(&http, &server, &rx.url("/during")).await;
    assert_eq!(
        rx.next(WAIT).await.path,
        "/during",
        "sent straight to the receiver"
    );
    let leaked = tokio::time::timeout(Duration::from_secs(1), capture.next(WAIT)).await;
    assert!(
        leaked.is_err(),
        "the proxy from the environment got nothing"
    );
    server.kill().await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_egress_proxy_carries_webhooks_but_internal_destinations_are_refused_first(
    pool: sqlx::PgPool,
) {
    let mut rx = Receiver::ok().await;
    let mut proxy = Receiver::ok().await;
    let db = database_url_of(&pool);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // Through the proxy (loopback receivers allowed here, so the destination
    // passes the guard): the proxy gets the request, the receiver nothing.
    let proxy_url = proxy.url("");
    let server = ServerProcess::start(&db, &[("CALLHOOK_EGRESS_PROXY", proxy_url.as_str())]).await;
    scenario_and_call(&http, &server, &rx.url("/during")).await;
    let got = proxy.next(WAIT).await;
    assert_eq!(got.path, "/during", "the proxy carried it");
    let direct = tokio::time::timeout(Duration::from_secs(1), rx.next(WAIT)).await;
    assert!(direct.is_err(), "nothing went around the proxy");
    server.kill().await;

    // Without loopback allowed, an internal destination is refused before
    // the proxy sees anything.
    sqlx::query("delete from deliveries")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("delete from calls")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("delete from scenarios")
        .execute(&pool)
        .await
        .unwrap();
    let server = ServerProcess::start(
        &db,
        &[
            ("CALLHOOK_EGRESS_PROXY", proxy_url.as_str()),
            ("CALLHOOK_ALLOW_PRIVATE_DESTINATIONS", "false"),
        ],
    )
    .await;
    scenario_and_call(&http, &server, &rx.url("/during")).await;
    let error = eventually(WAIT, "the attempt recorded", || async {
        sqlx::query_scalar::<_, Option<String>>("select error from delivery_attempts limit 1")
            .fetch_optional(&pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(error.as_deref(), Some("blocked_destination"));
    let seen = tokio::time::timeout(Duration::from_millis(500), proxy.next(WAIT)).await;
    assert!(
        seen.is_err(),
        "the proxy saw nothing of an internal destination"
    );
    server.kill().await;
}
