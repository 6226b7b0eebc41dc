//! The operator's console: sign-in, sessions, CSRF, and the pages, read
//! as HTML.

use reqwest::header::{HeaderMap, SET_COOKIE};
use scraper::{Html, Selector};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `name=value` of a `Set-Cookie` for `name`, and the whole header.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let whole = v.to_str().ok()?.to_owned();
        let pair = whole.split(';').next()?.trim().to_owned();
        pair.starts_with(&format!("{name}="))
            .then_some((pair, whole))
    })
}

fn select(html: &Html, css: &str) -> Vec<String> {
    html.select(&Selector::parse(css).unwrap())
        .map(|e| e.text().collect::<String>().trim().to_owned())
        .collect()
}

fn attr(html: &Html, css: &str, name: &str) -> String {
    html.select(&Selector::parse(css).unwrap())
        .next()
        .unwrap_or_else(|| panic!("{css} on the page"))
        .value()
        .attr(name)
        .unwrap()
        .to_owned()
}

/// Signs in with `token`; the session cookie (`name=value`).
async fn sign_in(app: &TestApp, http: &reqwest::Client, token: &str) -> reqwest::Response {
    let form = http.get(app.url("/console/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    let (login_cookie, _) = set_cookie(form.headers(), "callhook_login_csrf").unwrap();
    let html = Html::parse_document(&form.text().await.unwrap());
    let csrf = attr(&html, "input[name=csrf]", "value");
    assert_eq!(attr(&html, "input[name=token]", "type"), "password");
    http.post(app.url("/console/login"))
        .header("cookie", login_cookie)
        .form(&[("token", token), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_console_opens_with_the_admin_token_only_and_shows_scenarios_and_health(pool: PgPool) {
    let rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    let created = app
        .create_scenario(json!({"name": "Main site", "numbers": ["78005552233"],
                                "during_call_url": rx.url("/during")}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let http = client();

    // Nothing without a session.
    let r = http.get(app.url("/console")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/console/login"));

    // The ingest token opens nothing; a forged form is refused.
    let r = sign_in(&app, &http, INGEST).await;
    assert_eq!(r.status(), 401);
    assert!(set_cookie(r.headers(), "callhook_session").is_none());
    let html = Html::parse_document(&r.text().await.unwrap());
    assert_eq!(select(&html, "[role=alert]"), vec!["Wrong admin token"]);
    let forged = http
        .post(app.url("/console/login"))
        .form(&[("token", ADMIN), ("csrf", "made-up")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // The admin token opens a session held in a strict cookie.
    let r = sign_in(&app, &http, ADMIN).await;
    assert_eq!(r.status(), 303);
    let (session, whole) = set_cookie(r.headers(), "callhook_session").unwrap();
    assert!(
        whole.contains("HttpOnly") && whole.contains("SameSite=Strict"),
        "{whole}"
    );

    let page = http
        .get(app.url("/console"))
        .header("cookie", &session)
        .header("accept-language", "ru-RU,ru;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = Html::parse_document(&page.text().await.unwrap());
    assert_eq!(
        select(&html, "h1"),
        vec!["Сценарии"],
        "Russian by Accept-Language"
    );
    assert_eq!(
        select(&html, "tr[data-scenario] td.name"),
        vec!["Main site"]
    );
    assert_eq!(
        select(&html, "tr[data-scenario] td.numbers"),
        vec!["78005552233"]
    );
    assert_eq!(select(&html, "td.during .state"), vec!["работает"]);
    assert_eq!(select(&html, "td.after .state"), vec!["работает"]);

    // The health page pauses an endpoint through a form with its CSRF token.
    let page = http
        .get(app.url("/console/health?lang=en"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let html = Html::parse_document(&page.text().await.unwrap());
    assert_eq!(select(&html, "h1"), vec!["Endpoint health"]);
    let csrf = attr(
        &html,
        "form[action$='/during_call/pause'] input[name=csrf]",
        "value",
    );
    let action = format!("/console/scenarios/{id}/endpoints/during_call/pause");
    let without = http
        .post(app.url(&action))
        .header("cookie", &session)
        .form(&[("csrf", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        without.status(),
        403,
        "a post without the CSRF token is refused"
    );
    let done = http
        .post(app.url(&action))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    let (_, scenario) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    assert_eq!(scenario["health"]["during_call"]["state"], "paused");
    let (_, trail) = app
        .admin_get(&format!("/api/v1/audit-log?scenario_id={id}"))
        .await;
    assert_eq!(trail["items"][0]["action"], "endpoint.pause");
    assert_eq!(trail["items"][0]["actor"], "admin");

    // Sign out: the cookie is cleared.
    let out = http
        .post(app.url("/console/logout"))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let (cleared, whole) = set_cookie(out.headers(), "callhook_session").unwrap();
    assert_eq!(cleared, "callhook_session=");
    assert!(whole.contains("Max-Age=0"));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_console_can_be_turned_off(pool: PgPool) {
    let app = spawn_app_with(pool, |c| c.console = false).await;
    let r = client()
        .get(app.url("/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_delivery_log_and_a_call_page_show_what_was_sent_and_resend_it(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    let created = app
        .create_scenario(
            json!({"name": "Main", "numbers": ["78005552233"], "during_call_url": rx.url("/during")}),
        )
        .await;
    let delivery = start_call(&app, "313").await;
    rx.next(std::time::Duration::from_secs(20)).await;
    wait_state(
        &pool,
        delivery,
        "delivered",
        std::time::Duration::from_secs(20),
    )
    .await;
    let http = client();
    let r = sign_in(&app, &http, ADMIN).await;
    let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();

    let list = http
        .get(app.url("/console/deliveries?lang=en&state=delivered"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let html = Html::parse_document(&list.text().await.unwrap());
    assert_eq!(select(&html, "tr[data-delivery] td.call a"), vec!["313"]);
    assert_eq!(select(&html, "tr[data-delivery] .state"), vec!["delivered"]);
    let empty = http
        .get(app.url("/console/deliveries?lang=en&state=failed"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let html = Html::parse_document(&empty.text().await.unwrap());
    assert!(
        select(&html, "tr[data-delivery]").is_empty(),
        "the state filter applies"
    );

    let call = http
        .get(app.url("/console/calls/313?lang=en"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    let html = Html::parse_document(&call.text().await.unwrap());
    let payload = select(&html, "section.delivery pre.payload");
    let stored: String = sqlx::query_scalar("select payload from deliveries where id = $1")
        .bind(delivery)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(payload, vec![stored.clone()], "the exact body sent");
    assert_eq!(
        select(&html, "table.attempts tbody tr td:nth-child(3)"),
        vec!["200"]
    );
    let curl = select(&html, "pre.curl").pop().unwrap();
    assert!(
        curl.starts_with("curl -sS -X POST ") && curl.contains(&rx.url("/during")),
        "{curl}"
    );
    assert!(curl.contains(&format!("webhook-id: {delivery}")), "{curl}");
    // Run as it is, it sends the very request, verifiable with the secret.
    let ran = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&curl)
        .output()
        .await
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let replayed = rx.next(std::time::Duration::from_secs(10)).await;
    assert_eq!(replayed.body, stored.as_bytes());
    let (_, scenario) = app
        .admin_get(&format!(
            "/api/v1/scenarios/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert!(signed_with(
        &replayed,
        scenario["signing_secret"].as_str().unwrap()
    ));
    let csrf = attr(&html, "form[action$='/retry'] input[name=csrf]", "value");

    let resent = http
        .post(app.url(&format!("/console/deliveries/{delivery}/retry")))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resent.status(), 303);
    let again = rx.next(std::time::Duration::from_secs(20)).await;
    assert_eq!(
        again.header("webhook-id"),
        delivery.to_string(),
        "the same webhook-id"
    );
    let missing = http
        .get(app.url("/console/calls/nope"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_scenario_form_shows_errors_at_their_field_saves_previews_rotates_and_deletes(
    pool: PgPool,
) {
    let app = spawn_app(pool.clone()).await;
    let http = client();
    let r = sign_in(&app, &http, ADMIN).await;
    let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();
    let get = |path: String| {
        let (http, session) = (http.clone(), session.clone());
        let url = app.url(&path);
        async move {
            let r = http
                .get(url)
                .header("cookie", session)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            Html::parse_document(&r.text().await.unwrap())
        }
    };
    let html = get("/console/scenarios/new?lang=en".into()).await;
    let csrf = attr(&html, "form#settings input[name=csrf]", "value");
    let hints = select(&html, "#placeholders code");
    assert!(
        hints.contains(&"{utm_source}".to_owned()) && hints.contains(&"{caller}".to_owned()),
        "the payload's fields are offered: {hints:?}"
    );
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        let (http, session) = (http.clone(), session.clone());
        let url = app.url(&path);
        async move {
            http.post(url)
                .header("cookie", session)
                .form(&fields)
                .send()
                .await
                .unwrap()
        }
    };
    let fields = |url: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "Main site".to_owned()),
            ("during_call_url", url.to_owned()),
            ("after_call_url", String::new()),
            ("custom_fields", "source={marker}".to_owned()),
            ("numbers", "+7 (800) 555-22-33".to_owned()),
            ("static_numbers", String::new()),
            ("timezone", "Europe/Moscow".to_owned()),
        ]
    };

    // A bad URL first: the form again, the error at its field.
    let bad = post("/console/scenarios/new?lang=en".into(), fields("not a url")).await;
    assert_eq!(bad.status(), 422);
    let html = Html::parse_document(&bad.text().await.unwrap());
    let at_field = html
        .select(&Selector::parse("span.field-error").unwrap())
        .map(|e| e.value().attr("data-field").unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(at_field, vec!["during_call_url"]);
    assert_eq!(
        attr(&html, "input#name", "value"),
        "Main site",
        "what was typed stays"
    );

    let good = post(
        "/console/scenarios/new?lang=en".into(),
        fields("https://crm.example.com/hook"),
    )
    .await;
    assert_eq!(good.status(), 303);
    let location = good.headers()["location"].to_str().unwrap().to_owned();
    let id = location
        .trim_start_matches("/console/scenarios/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let (_, api) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    assert_eq!(api["numbers"], json!(["78005552233"]));
    assert_eq!(
        api["custom_fields"],
        json!([{"name": "source", "value": "{marker}"}])
    );

    let html = get(location.clone()).await;
    assert_eq!(
        attr(&html, "input#during_call_url", "value"),
        "https://crm.example.com/hook"
    );
    let preview = select(&html, "pre.preview[data-kind=during_call]")
        .pop()
        .unwrap();
    let keys: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&preview)
            .unwrap()
            .keys()
            .cloned()
            .collect();
    assert_eq!(
        &keys[..4],
        ["id", "caller", "callee", "visit_id"],
        "the page's key order"
    );
    assert!(
        preview.contains(r#""source": "vk_new""#),
        "placeholders filled: {preview}"
    );
    let secret = select(&html, "code#secret").pop().unwrap();
    assert_eq!(secret, api["signing_secret"].as_str().unwrap());

    let csrf = attr(
        &html,
        "form[action*='/secret/rotate'] input[name=csrf]",
        "value",
    );
    let rotated = post(
        format!("/console/scenarios/{id}/secret/rotate"),
        vec![("csrf", csrf.clone())],
    )
    .await;
    assert_eq!(rotated.status(), 303);
    let html = get(location).await;
    assert_ne!(select(&html, "code#secret").pop().unwrap(), secret);

    let kept = post(
        format!("/console/scenarios/{id}/delete"),
        vec![("csrf", csrf.clone())],
    )
    .await;
    assert_eq!(kept.status(), 303);
    assert_eq!(
        app.admin_get(&format!("/api/v1/scenarios/{id}")).await.0,
        200,
        "not without the confirmation"
    );
    let gone = post(
        format!("/console/scenarios/{id}/delete"),
        vec![("csrf", csrf.clone()), ("confirm", "yes".to_owned())],
    )
    .await;
    assert_eq!(gone.status(), 303);
    assert_eq!(
        app.admin_get(&format!("/api/v1/scenarios/{id}")).await.0,
        404
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_pool_page_shows_reserved_and_free_numbers(pool: PgPool) {
    let app = spawn_app(pool).await;
    let created = app
        .create_scenario(json!({"name": "Pool", "numbers": ["78005552233", "78005552234"]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let (status, reserved) = app
        .ingest_post(
            "/api/v1/visits",
            &json!({"scenario_id": id, "visit_id": "v1"}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{reserved}");
    let http = client();
    let r = sign_in(&app, &http, ADMIN).await;
    let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();
    let page = http
        .get(app.url(&format!("/console/scenarios/{id}/pool?lang=en")))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = Html::parse_document(&page.text().await.unwrap());
    assert_eq!(select(&html, "#summary .size"), vec!["2"]);
    assert_eq!(select(&html, "#summary .reserved"), vec!["1"]);
    assert_eq!(select(&html, "#summary .free"), vec!["1"]);
    let mut states = select(&html, "tr[data-number] td.number-state");
    states.sort();
    assert_eq!(states, vec!["free", "reserved"]);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_test_send_from_the_form_shows_the_receivers_answer(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool).await;
    let created = app
        .create_scenario(
            json!({"name": "Main", "numbers": ["78005552233"], "after_call_url": rx.url("/after")}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let http = client();
    let r = sign_in(&app, &http, ADMIN).await;
    let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();
    let page = http
        .get(app.url(&format!("/console/scenarios/{id}?lang=en")))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let html = Html::parse_document(&page.text().await.unwrap());
    let csrf = attr(&html, "form#settings input[name=csrf]", "value");
    let sent = http
        .post(app.url(&format!("/console/scenarios/{id}/test?lang=en")))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str()), ("kind", "after_call")])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let html = Html::parse_document(&sent.text().await.unwrap());
    let result = select(&html, "#test-result").pop().unwrap();
    assert!(
        result.contains("HTTP 200") && result.contains(&rx.url("/after")),
        "{result}"
    );
    let got = rx.next(std::time::Duration::from_secs(10)).await;
    assert!(got.header("webhook-id").starts_with("test_"));
    assert_eq!(got.json()["status"], "ANSWER", "the after-call example");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn bulk_recover_shows_the_count_before_it_resends(pool: PgPool) {
    let mut rx = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| c.role = callhook::Role::Api).await;
    let created = app
        .create_scenario(json!({"name": "Main", "numbers": ["78005552233"], "during_call_url": rx.url("/during")}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    for call in ["1", "2", "3"] {
        start_call(&app, call).await;
    }
    sqlx::query(
        "update deliveries set state = 'failed', next_attempt_at = null, lease_token = null",
    )
    .execute(&pool)
    .await
    .unwrap();
    let http = client();
    let r = sign_in(&app, &http, ADMIN).await;
    let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();
    let page = http
        .get(app.url("/console/recover?lang=en"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let html = Html::parse_document(&page.text().await.unwrap());
    let csrf = attr(&html, "form#recover input[name=csrf]", "value");
    let since = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let post = |confirm: &'static str| {
        let (http, session, csrf, since, id) = (
            http.clone(),
            session.clone(),
            csrf.clone(),
            since.clone(),
            id.clone(),
        );
        let url = app.url("/console/recover?lang=en");
        async move {
            let r = http
                .post(url)
                .header("cookie", session)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("scenario_id", id.as_str()),
                    ("since", since.as_str()),
                    ("confirm", confirm),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            Html::parse_document(&r.text().await.unwrap())
        }
    };
    let counted = post("").await;
    assert_eq!(select(&counted, "#count strong"), vec!["3"]);
    let left: i64 = sqlx::query_scalar("select count(*) from deliveries where state = 'failed'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 3, "nothing requeued before the confirmation");
    let done = post("yes").await;
    assert_eq!(select(&done, "#recovered strong"), vec!["3"]);
    let pending: i64 =
        sqlx::query_scalar("select count(*) from deliveries where state = 'pending'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, 3);
    assert!(
        tokio::time::timeout(
            std::time::Duration::from_millis(300),
            rx.next(std::time::Duration::from_secs(1))
        )
        .await
        .is_err(),
        "an API-only process sends nothing"
    );
}
