//! Security: egress that cannot be bent by the environment.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::process::*;

const WAIT: Duration = Duration::from_secs(20);

/// Creates a scenario sending during-call webhooks to `url`; its id.
async fn scenario_at(http: &reqwest::Client, server: &ServerProcess, url: &str) -> String {
    let (status, created) = server
        .post(
            http,
            "/api/v1/scenarios",
            ADMIN,
            &json!({"name": "Main", "numbers": ["78005552233"], "during_call_url": url}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// Reports the page's example call as `id`, expecting `status`; the answer.
async fn call(
    http: &reqwest::Client,
    server: &ServerProcess,
    id: &str,
    status: u16,
) -> serde_json::Value {
    let (got, body) = server
        .post(http, "/api/v1/calls", INGEST, &page_call(id))
        .await;
    assert_eq!(got, status, "{body}");
    body
}

async fn scenario_and_call(http: &reqwest::Client, server: &ServerProcess, url: &str) {
    scenario_at(http, server, url).await;
    call(http, server, "1", 202).await;
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

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_damaged_stored_secret_or_timezone_sends_nothing_and_says_why(pool: sqlx::PgPool) {
    let mut rx = Receiver::ok().await;
    let log = std::env::temp_dir().join(format!("callhook-damaged-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let server =
        ServerProcess::start_logging(&database_url_of(&pool), &[("RUST_LOG", "error")], &log).await;
    let http = reqwest::Client::new();
    let id = scenario_at(&http, &server, &rx.url("/during")).await;
    sqlx::query("update scenarios set signing_secret = 'whsec_not*base64'")
        .execute(&pool)
        .await
        .unwrap();
    call(&http, &server, "1", 202).await;
    let why = eventually(WAIT, "the delivery held with a reason", || async {
        sqlx::query_scalar::<_, Option<String>>("select last_error from deliveries")
            .fetch_one(&pool)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(why, "invalid_signing_secret");
    let (state, attempts): (String, i32) =
        sqlx::query_as("select state, attempt_count from deliveries")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("pending", 0),
        "waits, nothing sent"
    );
    let sent = tokio::time::timeout(Duration::from_secs(1), rx.next(WAIT)).await;
    assert!(sent.is_err(), "never an unsigned webhook");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&id) && text.contains("signing secret"),
        "the log names the scenario: {text}"
    );

    // A damaged zone is an error naming the scenario, not a silent Moscow.
    sqlx::query("update scenarios set timezone = 'Mars/Olympus_Mons'")
        .execute(&pool)
        .await
        .unwrap();
    let body = call(&http, &server, "2", 500).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&id) && message.contains("timezone"),
        "{body}"
    );
    server.kill().await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn every_admin_change_is_audited_with_the_token_name_and_no_secret(pool: sqlx::PgPool) {
    use reqwest::Method;
    let rx = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.admin_tokens = Some(
            "alice:alice-token-0000001,bob:bob-token-00000002"
                .to_owned()
                .into(),
        );
        c.role = callhook::Role::Api;
    })
    .await;
    let (alice, bob) = (Some("alice-token-0000001"), Some("bob-token-00000002"));
    let (status, created) = app
        .raw(Method::POST, "/api/v1/scenarios", alice, Some(&json!({"name": "Main", "numbers": ["78005552233"], "during_call_url": rx.url("/one")})))
        .await;
    assert_eq!(status.as_u16(), 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut secrets = vec![created["signing_secret"].as_str().unwrap().to_owned()];
    let path = format!("/api/v1/scenarios/{id}");
    let (status, _) = app
        .raw(Method::PUT, &path, bob, Some(&json!({"name": "Main", "numbers": ["78005552233"], "during_call_url": rx.url("/two")})))
        .await;
    assert_eq!(status.as_u16(), 200);
    let (_, rotated) = app
        .admin_post(&format!("{path}/secret/rotate"), &json!({}))
        .await;
    secrets.push(rotated["signing_secret"].as_str().unwrap().to_owned());
    let (status, _) = app
        .raw(
            Method::POST,
            &format!("{path}/test"),
            alice,
            Some(&json!({"kind": "during_call"})),
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    app.raw(
        Method::POST,
        &format!("{path}/endpoints/during_call/pause"),
        bob,
        None,
    )
    .await;
    app.raw(
        Method::POST,
        &format!("{path}/endpoints/during_call/enable"),
        bob,
        None,
    )
    .await;
    let delivery = start_call(&app, "1").await;
    sqlx::query(
        "update deliveries set state = 'failed', next_attempt_at = null, lease_token = null",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (status, _) = app
        .raw(
            Method::POST,
            &format!("/api/v1/deliveries/{delivery}/retry"),
            alice,
            None,
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    sqlx::query(
        "update deliveries set state = 'failed', next_attempt_at = null, lease_token = null",
    )
    .execute(&pool)
    .await
    .unwrap();
    app.raw(
        Method::POST,
        &format!("/api/v1/deliveries/retry?scenario_id={id}"),
        bob,
        None,
    )
    .await;
    let (status, _) = app.raw(Method::DELETE, &path, alice, None).await;
    assert_eq!(status.as_u16(), 204);

    let (status, page) = app
        .admin_get(&format!("/api/v1/audit-log?scenario_id={id}&limit=500"))
        .await;
    assert_eq!(status.as_u16(), 200, "{page}");
    let got: Vec<(String, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("scenario.create", "alice"),
        ("scenario.save", "bob"),
        ("secret.rotate", "admin"),
        ("scenario.test", "alice"),
        ("endpoint.pause", "bob"),
        ("endpoint.enable", "bob"),
        ("delivery.retry", "alice"),
        ("deliveries.retry", "bob"),
        ("scenario.delete", "alice"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    assert_eq!(got, want);
    let save = &page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "scenario.save")
        .unwrap()["details"];
    assert_eq!(save["during_call_url"]["before"], rx.url("/one"));
    assert_eq!(save["during_call_url"]["after"], rx.url("/two"));
    // No secret anywhere in the trail, in the API or in the table.
    let text = page.to_string();
    let table: Vec<String> = sqlx::query_scalar("select row_to_json(a)::text from audit_log a")
        .fetch_all(&pool)
        .await
        .unwrap();
    for s in &secrets {
        let key = s.strip_prefix("whsec_").unwrap();
        assert!(
            !text.contains(key) && !table.iter().any(|r| r.contains(key)),
            "a secret leaked"
        );
    }
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn with_a_key_secrets_are_sealed_at_rest_and_survive_a_key_rotation(pool: sqlx::PgPool) {
    use base64::Engine as _;
    let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let (key1, key2) = (b64(7), b64(9));
    let mut rx = Receiver::ok().await;
    let db = database_url_of(&pool);
    let http = reqwest::Client::new();
    let server = ServerProcess::start(&db, &[("CALLHOOK_SECRET_KEY", key1.as_str())]).await;
    let id = scenario_at(&http, &server, &rx.url("/during")).await;
    let shown = |server: &ServerProcess| {
        let (http, id, server) = (http.clone(), id.clone(), server.url(""));
        async move {
            let v: serde_json::Value = http
                .get(format!("{server}/api/v1/scenarios/{id}"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["signing_secret"].as_str().unwrap().to_owned()
        }
    };
    let first = shown(&server).await;
    let stored = || async {
        sqlx::query_scalar::<_, String>("select row_to_json(s)::text from scenarios s")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let row = stored().await;
    assert!(
        !row.contains(first.strip_prefix("whsec_").unwrap()),
        "no usable secret at rest: {row}"
    );
    assert!(row.contains("enc:v2:"), "{row}");
    call(&http, &server, "1", 202).await;
    assert!(
        signed_with(&rx.next(WAIT).await, &first),
        "verifies with the secret the API shows"
    );
    // A secret rotation: both secrets sign during the overlap.
    let (_, rotated) = server
        .post(
            &http,
            &format!("/api/v1/scenarios/{id}/secret/rotate"),
            ADMIN,
            &json!({}),
        )
        .await;
    let second = rotated["signing_secret"].as_str().unwrap().to_owned();
    call(&http, &server, "2", 202).await;
    let got = rx.next(WAIT).await;
    assert!(signed_with(&got, &second) && signed_with(&got, &first));
    server.kill().await;

    // The key is rotated: re-seal everything under the new one.
    let out = run_command(
        &db,
        &["rotate-secret-key"],
        &[
            ("CALLHOOK_SECRET_KEY", key2.as_str()),
            ("CALLHOOK_SECRET_KEY_PREVIOUS", key1.as_str()),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = row;
    let row = stored().await;
    assert_ne!(row, before, "re-sealed");
    for s in [&first, &second] {
        assert!(!row.contains(s.strip_prefix("whsec_").unwrap()));
    }
    // Only the new key now: everything still opens and verifies.
    let server = ServerProcess::start(&db, &[("CALLHOOK_SECRET_KEY", key2.as_str())]).await;
    call(&http, &server, "3", 202).await;
    let got = rx.next(WAIT).await;
    assert!(
        signed_with(&got, &second) && signed_with(&got, &first),
        "old webhooks' secret still verifies in the overlap"
    );
    assert_eq!(shown(&server).await, second);
    server.kill().await;
}

/// A sealed secret is bound to its scenario: copied into another scenario's
/// row (say, by someone who can write the table but not read the key), it
/// does not open there, so nothing is signed with it and the API says so.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_sealed_secret_copied_into_another_scenario_does_not_open_there(pool: sqlx::PgPool) {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let rx = Receiver::ok().await;
    let http = reqwest::Client::new();
    let server = ServerProcess::start(
        &database_url_of(&pool),
        &[("CALLHOOK_SECRET_KEY", key.as_str())],
    )
    .await;
    let a = scenario_at(&http, &server, &rx.url("/a")).await;
    let (status, b) = server
        .post(
            &http,
            "/api/v1/scenarios",
            ADMIN,
            &json!({"name": "b", "numbers": ["74950000002"], "during_call_url": rx.url("/b")}),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let b = b["id"].as_str().unwrap().to_owned();
    let shown = |id: String| {
        let (http, server) = (http.clone(), server.url(""));
        async move {
            http.get(format!("{server}/api/v1/scenarios/{id}"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(shown(b.clone()).await.status(), 200, "b's own seal opens");
    sqlx::query(
        "update scenarios set signing_secret = (select signing_secret from scenarios where id = $1::uuid) where id = $2::uuid",
    )
    .bind(&a)
    .bind(&b)
    .execute(&pool)
    .await
    .unwrap();
    let r = shown(b.clone()).await;
    assert_eq!(r.status(), 500);
    let body: serde_json::Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&b) && message.contains("signing secret"),
        "{body}"
    );
    assert_eq!(shown(a).await.status(), 200, "a's stays readable");
    server.kill().await;
}
