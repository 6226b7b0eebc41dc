//! Abuse and bad input: oversized and dribbled requests, bursts, crossed
//! tokens, secrets in logs, credentials in URLs, hostile receiver answers.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use callhook::Role;
use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::process::*;

/// Reads what the server answers until it closes or `deadline` passes;
/// returns the bytes and whether the connection was closed.
async fn read_answer(stream: &mut TcpStream, deadline: Duration) -> (String, bool) {
    let end = Instant::now() + deadline;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&out).into(), false);
        }
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // A complete answer with a body we can see the end of is enough.
                let text = String::from_utf8_lossy(&out);
                if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                    return (text.into(), false);
                }
            }
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

fn request_head(path: &str, token: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: callhook\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\n{extra}\r\n"
    )
}

async fn api_only(pool: PgPool) -> TestApp {
    spawn_app_with(pool, |c| c.role = Role::Api).await
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_huge_content_length_is_413_before_any_body_is_sent(pool: PgPool) {
    let app = api_only(pool).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let head = request_head("/api/v1/calls", INGEST, "content-length: 10000000000\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // Not a byte of the body: the answer must come from the header alone.
    let (answer, _) = read_answer(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"body_too_large""#), "{answer}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_chunked_body_over_the_limit_is_413_without_reading_it_all(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let head = request_head("/api/v1/calls", INGEST, "transfer-encoding: chunked\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // 70 KiB in 1 KiB chunks, then nothing: the stream is never finished,
    // so a server that waited for the whole body would never answer.
    let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
    for _ in 0..70 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break; // the server already answered and closed
        }
    }
    let (answer, _) = read_answer(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"body_too_large""#), "{answer}");
    let calls: i64 = sqlx::query_scalar("select count(*) from calls")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(calls, 0);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_client_dribbling_its_headers_is_cut_off(pool: PgPool) {
    let app = spawn_app_with(pool, |c| {
        c.role = Role::Api;
        c.http_header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"POST /api/v1/calls HTTP/1.1\r\nhost: callhook\r\n")
        .await
        .unwrap();
    // One more header byte now and then, never the blank line.
    let mut closed = false;
    for _ in 0..40 {
        // Not a wait: the slow client's pacing (one header byte per 100 ms).
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        let (_, eof) = read_answer(&mut s, Duration::from_secs(5)).await;
        closed = eof;
    }
    assert!(
        closed,
        "the connection was still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_client_dribbling_its_body_gets_408(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |c| {
        c.role = Role::Api;
        c.http_request_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    let head = request_head("/api/v1/calls", INGEST, "content-length: 200\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"{\"id\": \"slow\",").await.unwrap();
    let (answer, _) = read_answer(&mut s, Duration::from_secs(6)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_burst_beyond_capacity_is_shed_with_503_and_retry_after(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |c| {
        c.role = Role::Api;
        c.max_inflight_requests = 2;
    })
    .await;
    app.create_scenario(json!({"name": "s", "numbers": ["78005552233"]}))
        .await;
    // Two requests that hold their slots: headers sent, body still coming.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let head = request_head("/api/v1/calls", INGEST, "content-length: 500\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(b"{").await.unwrap();
        holders.push(s);
    }
    let call = page_call("burst");
    let (status, body, retry_after) = eventually(
        Duration::from_secs(5),
        "a request beyond capacity to be shed",
        || async {
            let r = app
                .http
                .post(app.url("/api/v1/calls"))
                .bearer_auth(INGEST)
                .json(&call)
                .send()
                .await
                .ok()?;
            let status = r.status();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: serde_json::Value = r.json().await.ok()?;
            (status == 503).then_some((status, body, retry))
        },
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(retry_after.is_some_and(|v| v.parse::<u64>().unwrap() > 0));
    // Admin and service routes are not shed.
    let (status, _) = app.admin_get("/api/v1/scenarios").await;
    assert_eq!(status, StatusCode::OK);

    // Once the slots are free, the same call goes through.
    drop(holders);
    let accepted = eventually(Duration::from_secs(5), "capacity to come back", || async {
        let (status, _) = app.ingest_post("/api/v1/calls", &call).await;
        (status == StatusCode::ACCEPTED).then_some(status)
    })
    .await;
    assert_eq!(accepted, StatusCode::ACCEPTED);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn each_token_opens_only_its_own_api(pool: PgPool) {
    let app = api_only(pool).await;
    let id = app
        .create_scenario(json!({"name": "s", "numbers": ["78005552233"]}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin_routes = [
        (reqwest::Method::GET, "/api/v1/scenarios".to_owned()),
        (reqwest::Method::POST, "/api/v1/scenarios".to_owned()),
        (reqwest::Method::GET, format!("/api/v1/scenarios/{id}")),
        (reqwest::Method::PUT, format!("/api/v1/scenarios/{id}")),
        (reqwest::Method::DELETE, format!("/api/v1/scenarios/{id}")),
        (
            reqwest::Method::POST,
            format!("/api/v1/scenarios/{id}/secret/rotate"),
        ),
    ];
    // Each route from its own loopback address: a wrong token counts
    // against its address (see the guessing test), and this test is about
    // which token opens what, not about how many guesses an address gets.
    let from = |n: u8| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 1, n]))
            .build()
            .unwrap()
    };
    let send = |http: reqwest::Client,
                method: reqwest::Method,
                path: String,
                token: Option<&'static str>,
                body: serde_json::Value| {
        let url = app.url(&path);
        async move {
            let mut req = http.request(method, url).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let body = json!({"name": "x"});
    for (n, (method, path)) in admin_routes.iter().enumerate() {
        for token in [Some(INGEST), None, Some("wrong")] {
            let http = from(n as u8 + 1);
            let (status, err) = send(http, method.clone(), path.clone(), token, body.clone()).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}");
            assert!(err["error"]["code"].is_string(), "{err}");
        }
    }
    for (n, path) in ["/api/v1/calls", "/api/v1/calls/1/end"]
        .into_iter()
        .enumerate()
    {
        for token in [Some(ADMIN), None, Some("wrong")] {
            let http = from(n as u8 + 100);
            let (status, _) = send(
                http,
                reqwest::Method::POST,
                path.to_owned(),
                token,
                page_call("1"),
            )
            .await;
            assert_eq!(status, 401, "{path} with {token:?}");
        }
    }
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn urls_with_embedded_credentials_are_refused(pool: PgPool) {
    let app = api_only(pool).await;
    for url in [
        "https://user:pw@crm.example.com/hook",
        "https://user@crm.example.com/hook",
        "http://:secret@crm.example.com/hook",
    ] {
        for field in ["during_call_url", "after_call_url"] {
            let (status, err) = app
                .admin_post("/api/v1/scenarios", &json!({"name": "s", field: url}))
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {err}");
            assert_eq!(err["error"]["field"], field, "{err}");
        }
    }
}

/// `http://localhost\@127.0.0.1:19311/` is host `localhost` to callhook and
/// 127.0.0.1 to curl: a backslash before the path is refused, and every URL
/// is kept (and answered) in the one parsed form every client reads alike.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_url_is_kept_normalised_and_a_backslash_before_its_path_is_refused(pool: PgPool) {
    let app = api_only(pool.clone()).await;
    for url in [
        "http://localhost\\@127.0.0.1:19311/",
        "http://127.0.0.1\\.crm.example.com/hook",
    ] {
        let (status, err) = app
            .admin_post(
                "/api/v1/scenarios",
                &json!({"name": "s", "after_call_url": url}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {err}");
        assert_eq!(err["error"]["field"], "after_call_url", "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("backslash"),
            "{err}"
        );
    }
    let (status, s) = app
        .admin_post(
            "/api/v1/scenarios",
            &json!({"name": "s", "during_call_url": "HTTPS://CRM.Example.COM:443/Hook?x=1",
                    "after_call_url": "http://127.0.0.1:80"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(s["during_call_url"], "https://crm.example.com/Hook?x=1");
    assert_eq!(s["after_call_url"], "http://127.0.0.1/");
    let stored: (String, String) =
        sqlx::query_as("select during_call_url, after_call_url from scenarios")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        stored,
        (
            "https://crm.example.com/Hook?x=1".into(),
            "http://127.0.0.1/".into()
        )
    );
}

/// A receiver on raw TCP that answers every request with `answer` as is.
async fn raw_receiver(answer: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                // Read the request head and body (small), then answer and close.
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}/hook")
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn receiver_bodies_are_capped_and_stored_whatever_bytes_they_hold(pool: PgPool) {
    let mut body = b"bad \xff\xfe utf-8, a NUL \0 here, \xc3 cut".to_vec();
    body.extend(std::iter::repeat_n(b'\0', 3000));
    body.extend(std::iter::repeat_n(0xffu8, 20_000));
    let mut answer = format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let hook = raw_receiver(answer).await;

    let app = spawn_app_with(pool.clone(), |c| c.retry_schedule = "1h".parse().unwrap()).await;
    app.create_scenario(json!({"name": "s", "numbers": ["78005552233"], "during_call_url": hook}))
        .await;
    let (status, _) = app.ingest_post("/api/v1/calls", &page_call("bytes")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, stored) = eventually(Duration::from_secs(10), "the attempt row", || async {
        sqlx::query_as::<_, (Option<i32>, Option<String>)>(
            "select response_status, response_body from delivery_attempts",
        )
        .fetch_optional(&pool)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(status, Some(500));
    let stored = stored.expect("a body was stored");
    assert!(
        stored.starts_with("bad \u{FFFD}\u{FFFD} utf-8, a NUL \u{FFFD} here"),
        "{stored:?}"
    );
    assert!(!stored.contains('\0'));
    assert!(
        stored.chars().count() <= 4096,
        "{} characters stored",
        stored.chars().count()
    );
    assert!(stored.chars().count() > 3000, "the first 4 KiB are kept");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn tokens_and_signing_secrets_never_reach_the_log(pool: PgPool) {
    let db = database_url_of(&pool);
    let log = std::env::temp_dir().join(format!(
        "callhook-log-{}-{}.txt",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_file(&log);
    let server = ServerProcess::start_logging(
        &db,
        &[("RUST_LOG", "trace"), ("CALLHOOK_NO_MIGRATE", "true")],
        &log,
    )
    .await;
    let mut receiver = Receiver::scripted(vec![Reply::Status(500)], Reply::Status(200)).await;
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(server.url("/api/v1/scenarios"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "s", "numbers": ["78005552233"],
                      "during_call_url": receiver.url("/during"), "after_call_url": receiver.url("/after")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let first_secret = created["signing_secret"].as_str().unwrap().to_owned();
    let r = http
        .post(server.url("/api/v1/calls"))
        .bearer_auth(INGEST)
        .json(&page_call("log"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // A failure and a retry, then a success.
    receiver.next(Duration::from_secs(10)).await;
    receiver.next(Duration::from_secs(10)).await;
    let rotated: serde_json::Value = http
        .post(server.url(&format!("/api/v1/scenarios/{id}/secret/rotate")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second_secret = rotated["signing_secret"].as_str().unwrap().to_owned();
    let r = http
        .post(server.url("/api/v1/calls/log/end"))
        .bearer_auth(INGEST)
        .json(&json!({"status": "ANSWER", "duration": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let after = receiver.next(Duration::from_secs(10)).await;
    assert_eq!(after.path, "/after");
    // Wrong tokens are logged as refusals, never echoed.
    let r = http
        .get(server.url("/api/v1/scenarios"))
        .bearer_auth("a-wrong-token-value")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    server.terminate().await;

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        text.lines().count() > 20,
        "the trace log was captured ({} lines)",
        text.lines().count()
    );
    let mut needles = vec![
        ADMIN.to_owned(),
        INGEST.to_owned(),
        "a-wrong-token-value".to_owned(),
        "whsec_".to_owned(),
    ];
    for secret in [&first_secret, &second_secret] {
        needles.push(secret.trim_start_matches("whsec_").to_owned());
    }
    for needle in &needles {
        if let Some(line) = text.lines().find(|l| l.contains(needle.as_str())) {
            panic!("the log holds a secret ({needle}): {line}");
        }
    }
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn after_a_secret_rotation_webhooks_carry_both_signatures(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool).await;
    let created = app
        .create_scenario(
            json!({"name": "s", "numbers": ["78005552233"], "during_call_url": rx.url("/during")}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let old = created["signing_secret"].as_str().unwrap();
    assert!(created["previous_secret_expires_at"].is_null());

    let (status, rotated) = app
        .admin_post(&format!("/api/v1/scenarios/{id}/secret/rotate"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["signing_secret"].as_str().unwrap();
    assert_ne!(new, old);
    assert!(new.starts_with("whsec_"));
    let until: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(rotated["previous_secret_expires_at"].clone()).unwrap();
    let hours = (until - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "overlap ends in {hours} h");
    let (_, shown) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    assert_eq!(shown["signing_secret"], new);
    assert_eq!(
        shown["previous_secret_expires_at"],
        rotated["previous_secret_expires_at"]
    );
    // What GET shows can still be saved back as is.
    let (status, saved) = app
        .admin_put(&format!("/api/v1/scenarios/{id}"), &shown)
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["signing_secret"], new);

    app.ingest_post("/api/v1/calls", &page_call("rot")).await;
    let got = rx.next(Duration::from_secs(10)).await;
    let signatures: Vec<&str> = got.header("webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    assert!(signatures.iter().all(|s| s.starts_with("v1,")));
    assert_eq!(
        signatures[0],
        signature_with(new, &got),
        "the new secret signs first"
    );
    assert_eq!(
        signatures[1],
        signature_with(old, &got),
        "the old secret still signs"
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn once_the_rotation_overlap_is_over_only_the_new_secret_signs(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app_with(pool, |c| c.secret_rotation_overlap = Duration::ZERO).await;
    let created = app
        .create_scenario(
            json!({"name": "s", "numbers": ["78005552233"], "during_call_url": rx.url("/during")}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let (status, rotated) = app
        .admin_post(&format!("/api/v1/scenarios/{id}/secret/rotate"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(rotated["previous_secret_expires_at"].is_null(), "{rotated}");
    app.ingest_post("/api/v1/calls", &page_call("rot")).await;
    let got = rx.next(Duration::from_secs(10)).await;
    assert_eq!(
        got.header("webhook-signature"),
        signature_with(rotated["signing_secret"].as_str().unwrap(), &got)
    );

    let (status, _) = app
        .admin_post(
            "/api/v1/scenarios/0190a0a0-0000-7000-8000-000000000000/secret/rotate",
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn guessing_tokens_is_slowed_per_address_and_another_address_is_not_locked_out(pool: PgPool) {
    let app = spawn_app(pool).await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let (guesser, colleague) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
    let get = |http: &reqwest::Client, token: &str| {
        http.get(app.url("/api/v1/scenarios"))
            .bearer_auth(token)
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..15 {
        let r = get(&guesser, &format!("guess-{i}")).await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let wait: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(wait >= 1, "Retry-After {wait}");
        }
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429; 5], "{statuses:?}");
    // Locked out: the right token from the guesser waits too, so a lucky
    // guess gains nothing.
    assert_eq!(get(&guesser, ADMIN).await.unwrap().status(), 429);
    // Another address is not locked out.
    assert_eq!(get(&colleague, ADMIN).await.unwrap().status(), 200);

    // The console's sign-in counts the same way, and answers in HTML.
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http.get(app.url("/console/login")).send().await.unwrap();
    let cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body = form.text().await.unwrap();
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let mut statuses = Vec::new();
    for i in 0..11 {
        let r = http
            .post(app.url("/console/login"))
            .header("cookie", &cookie)
            .form(&[("token", format!("guess-{i}")), ("csrf", csrf.clone())])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"));
        }
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn forwarded_headers_count_only_from_a_trusted_proxy(pool: PgPool) {
    // Not trusted: a client cannot pick the address it is counted by.
    let app = spawn_app(pool.clone()).await;
    for i in 0..11 {
        let r = app
            .http
            .get(app.url("/api/v1/scenarios"))
            .bearer_auth(format!("guess-{i}"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        let expected = if i < 10 { 401 } else { 429 };
        assert_eq!(r.status(), expected, "guess {i}");
    }
    // Behind a trusted proxy (127.0.0.1), each forwarded client counts alone.
    let proxied = spawn_app_with(pool, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]
    })
    .await;
    for i in 0..11 {
        let r = proxied
            .http
            .get(proxied.url("/api/v1/scenarios"))
            .bearer_auth(format!("guess-{i}"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "guess {i} from its own address");
    }
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_nul_in_a_call_id_on_a_read_path_is_a_422_naming_the_field(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (status, e) = app.admin_get("/api/v1/calls/a%00b").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["field"], "id");
    let (status, e) = app.admin_get("/api/v1/deliveries?call_id=a%00b").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["field"], "call_id");
}

/// Before sign-in the console reads a few KiB at most: a form post without
/// a session is turned away on its headers alone (not a byte of its 2 MB
/// body sent), and the sign-in form itself is refused past 4 KiB.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_console_reads_no_large_body_before_sign_in(pool: PgPool) {
    let app = spawn_app(pool).await;
    for path in [
        "/console/scenarios/new",
        "/console/recover",
        "/console/login",
    ] {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: callhook\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 2000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // Nothing of the body: the answer must come from the headers alone.
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("an answer before any of the body")
                .unwrap();
            assert_ne!(n, 0, "{path}: closed without an answer");
            answer.extend_from_slice(&buf[..n]);
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer.lines().next().unwrap_or("");
        let expected = if path == "/console/login" {
            "HTTP/1.1 413"
        } else {
            "HTTP/1.1 303"
        };
        assert!(status.starts_with(expected), "{path}: {answer}");
    }
    // A sign-in form just over the limit, sent whole, is refused too.
    let form = format!("token={}&csrf=x", "a".repeat(5 * 1024));
    let r = reqwest::Client::new()
        .post(app.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}
