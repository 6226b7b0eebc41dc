//! The delivery log, a call's page, resend and bulk recover.

use scraper::Html;
use serde_json::json;
use sqlx::PgPool;

use super::{attr, client, select, set_cookie, sign_in, Operator};
use crate::helpers::*;

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
        select(&html, "table.attempts tbody tr td:nth-child(4)"),
        vec!["200"]
    );
    let fields: Vec<String> = select(&html, "table#call tr");
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("started_at") && f.ends_with("2019-02-19 00:00:00 +03:00")),
        "the call's date on the scenario's clock: {fields:?}"
    );
    let started = select(&html, "table.attempts tbody tr td:nth-child(2)");
    assert!(
        started[0].ends_with(" +03:00"),
        "on the scenario's clock (Moscow): {started:?}"
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
    // An hour ago on the scenario's clock (Moscow, UTC+3).
    let since = (chrono::Utc::now() + chrono::Duration::hours(2))
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

/// Reports the page's example call as `id` to `callee`; its during-call
/// delivery.
async fn call_to(app: &TestApp, id: &str, callee: &str) -> uuid::Uuid {
    let mut call = page_call(id);
    call["callee"] = json!(callee);
    let (status, body) = app.ingest_post("/api/v1/calls", &call).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    body["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn get_html(http: &reqwest::Client, app: &TestApp, session: &str, path: &str) -> (u16, Html) {
    let r = http
        .get(app.url(path))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, Html::parse_document(&r.text().await.unwrap()))
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_delivery_log_filters_by_scenario_and_time_range_in_the_scenarios_zone(pool: PgPool) {
    // An API-only process: the deliveries stay pending, nothing is sent.
    let app = spawn_app_with(pool.clone(), |c| c.role = callhook::Role::Api).await;
    let ekb = app
        .create_scenario(json!({"name": "Ekb", "numbers": ["78005550001"],
            "during_call_url": "http://127.0.0.1:9/during", "timezone": "Asia/Yekaterinburg"}))
        .await;
    let ekb = ekb["id"].as_str().unwrap().to_owned();
    app.create_scenario(json!({"name": "Msk", "numbers": ["78005550002"],
        "during_call_url": "http://127.0.0.1:9/during"}))
        .await;
    let e1 = call_to(&app, "e1", "78005550001").await;
    call_to(&app, "m1", "78005550002").await;
    let http = client();
    let r = sign_in(&app, &http, ADMIN).await;
    let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();

    let (status, all) = get_html(&http, &app, &session, "/console/deliveries?lang=en").await;
    assert_eq!(status, 200);
    assert_eq!(
        select(&all, "tr[data-delivery] td.call a"),
        vec!["m1", "e1"]
    );
    // Each row's time is on its scenario's clock, with the offset.
    let created: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select created_at from deliveries where id = $1")
            .bind(e1)
            .fetch_one(&pool)
            .await
            .unwrap();
    let shown = select(&all, "tr[data-delivery] td:first-child");
    assert_eq!(
        shown[1],
        (created + chrono::Duration::hours(5))
            .format("%Y-%m-%d %H:%M:%S +05:00")
            .to_string()
    );
    assert!(shown[0].ends_with(" +03:00"), "{shown:?}");

    let only = |extra: String| format!("/console/deliveries?lang=en&scenario_id={ekb}{extra}");
    let (_, page) = get_html(&http, &app, &session, &only(String::new())).await;
    assert_eq!(select(&page, "tr[data-delivery] td.call a"), vec!["e1"]);
    assert!(
        select(&page, "form#filters label")
            .iter()
            .any(|l| l.contains("Asia/Yekaterinburg")),
        "the range's zone is named"
    );
    // The range is read on Yekaterinburg's clock (UTC+5): an hour ahead of
    // UTC's wall clock is four hours ago there.
    let wall = |d: chrono::Duration| {
        (chrono::Utc::now() + d)
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    let (_, page) = get_html(
        &http,
        &app,
        &session,
        &only(format!("&since={}", wall(chrono::Duration::hours(1)))),
    )
    .await;
    assert_eq!(select(&page, "tr[data-delivery] td.call a"), vec!["e1"]);
    let (_, page) = get_html(
        &http,
        &app,
        &session,
        &only(format!(
            "&since={}",
            wall(chrono::Duration::minutes(5 * 60 + 2))
        )),
    )
    .await;
    assert!(
        select(&page, "tr[data-delivery]").is_empty(),
        "since is after the call"
    );
    let (_, page) = get_html(
        &http,
        &app,
        &session,
        &only(format!("&until={}", wall(chrono::Duration::hours(1)))),
    )
    .await;
    assert!(
        select(&page, "tr[data-delivery]").is_empty(),
        "until is before the call"
    );

    // A receiver's refusal reads as http_<status> in the log and the overview.
    sqlx::query(
        "update deliveries set state = 'failed', next_attempt_at = null, last_status = 500
          where call_id = 'e1'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (_, page) = get_html(&http, &app, &session, &only(String::new())).await;
    assert_eq!(
        select(&page, "tr[data-delivery] td:last-child"),
        vec!["http_500"]
    );
    let (_, overview) = get_html(&http, &app, &session, "/console?lang=en").await;
    assert_eq!(
        select(
            &overview,
            &format!("tr[data-scenario='{ekb}'] td.last-error")
        ),
        vec!["http_500"]
    );

    let (status, page) = get_html(&http, &app, &session, &only("&since=yesterday".into())).await;
    assert_eq!(status, 422);
    assert_eq!(attr(&page, "p.error", "data-field"), "since");
    let (status, page) = get_html(
        &http,
        &app,
        &session,
        "/console/deliveries?lang=en&state=lost",
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(attr(&page, "p.error", "data-field"), "state");
}

/// One live poll (as htmx sends it): the calls of the rows it added and the
/// next poll's path.
async fn poll(
    http: &reqwest::Client,
    app: &TestApp,
    session: &str,
    path: &str,
) -> (Vec<String>, String) {
    let r = http
        .get(app.url(path))
        .header("cookie", session)
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let html = Html::parse_document(&format!("<table><tbody>{text}</tbody></table>"));
    (
        select(&html, "tr[data-delivery] td.call a"),
        attr(&html, "tr#live", "hx-get"),
    )
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn new_deliveries_appear_live_once_each_and_the_page_is_not_repeated(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |c| c.role = callhook::Role::Api).await;
    app.create_scenario(json!({"name": "Main", "numbers": ["78005552233"],
        "during_call_url": "http://127.0.0.1:9/during"}))
        .await;
    start_call(&app, "before").await;
    let http = client();
    let r = sign_in(&app, &http, ADMIN).await;
    let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();
    let page = http
        .get(app.url("/console/deliveries?lang=en"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = Html::parse_document(&page.text().await.unwrap());
    assert_eq!(select(&html, "tr[data-delivery] td.call a"), vec!["before"]);
    let script = attr(&html, "script[src]", "src");
    let js = http.get(app.url(&script)).send().await.unwrap();
    assert_eq!(js.status(), 200, "htmx is served from the binary");
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let mut next = attr(&html, "tr#live", "hx-get");

    // Calls after the page was made show up in the polls, newest first, each
    // once; the one the page showed never comes again.
    let later = ["l1", "l2", "l3"];
    for id in later {
        start_call(&app, id).await;
    }
    let made = chrono::Utc::now();
    let mut seen: Vec<String> = Vec::new();
    let from = |path: &str| -> i64 {
        url::form_urlencoded::parse(path.split_once('?').unwrap().1.as_bytes())
            .find(|(k, _)| k == "from")
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while from(&next) <= made.timestamp_millis() {
        assert!(
            std::time::Instant::now() < deadline,
            "the live windows did not pass the new calls in 20 s"
        );
        let (mut calls, then) = poll(&http, &app, &session, &next).await;
        calls.reverse(); // each window is newest first: keep arrival order
        seen.extend(calls);
        next = then;
        // Not a wait: the live log's poll pacing, as the browser's htmx does.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(seen, later, "each new call once, none from the page");
    let (again, _) = poll(&http, &app, &session, &next).await;
    assert!(again.is_empty(), "a passed window is never read again");

    // A poll without a session is told where to sign in, not given the page.
    let r = http
        .get(app.url(&next))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["hx-redirect"]
        .to_str()
        .unwrap()
        .starts_with("/console/login"));
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_call_whose_id_holds_url_characters_opens_from_the_log(pool: PgPool) {
    let rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    app.create_scenario(
        json!({"name": "A", "numbers": ["78005552233"], "during_call_url": rx.url("/d")}),
    )
    .await;
    let id = "a b#c?d%e+f";
    call_to(&app, id, "78005552233").await;
    let http = client();
    let r = sign_in(&app, &http, ADMIN).await;
    let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();
    let (status, html) = get_html(&http, &app, &session, "/console/deliveries?lang=en").await;
    assert_eq!(status, 200);
    let href = attr(&html, "td.call a", "href");
    let (status, page) = get_html(&http, &app, &session, &href).await;
    assert_eq!(status, 200, "{href}");
    assert!(
        page.root_element().text().collect::<String>().contains(id),
        "the call's own page: {href}"
    );
}

/// The log answers the ticket: each row's scenario, when a pending
/// delivery goes next or what it waits for, and one failure text (the API
/// says `http_500` too, where it used to say null beside `last_status`).
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_log_shows_the_scenario_the_next_attempt_and_what_a_delivery_waits_for(pool: PgPool) {
    let mut rx = Receiver::scripted(vec![], Reply::Status(500)).await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "5m,30m,2h".parse().unwrap();
        c.during_call_grace = std::time::Duration::from_secs(3600);
    })
    .await;
    app.create_scenario(json!({
        "name": "CRM of the shop",
        "numbers": ["78005552233"],
        "during_call_url": rx.url("/during"),
        "after_call_url": rx.url("/after"),
    }))
    .await;
    call_to(&app, "w1", "78005552233").await;
    end_call(&app, "w1").await;
    assert_eq!(
        rx.next(std::time::Duration::from_secs(20)).await.path,
        "/during"
    );
    // The failed attempt is recorded: a state read from Postgres.
    during_calls_waiting_a_retry(&pool, 1).await;
    let (_, listed) = app
        .admin_get("/api/v1/deliveries?call_id=w1&kind=during_call")
        .await;
    let during = &listed["items"][0];
    assert_eq!(
        (
            during["last_status"].as_i64(),
            during["last_error"].as_str()
        ),
        (Some(500), Some("http_500")),
        "one failure text: {listed}"
    );

    let html = Operator::sign_in(&app)
        .await
        .page(&app, "/console/deliveries?lang=en")
        .await;
    let rows = select(&html, "tr[data-delivery] td.scenario");
    assert_eq!(rows, ["CRM of the shop", "CRM of the shop"]);
    // Newest first: the after-call delivery waits for the during-call one,
    // which shows when it goes next and its failure.
    assert_eq!(
        attr(
            &html,
            "tr[data-delivery] td.next span.waiting",
            "data-waiting"
        ),
        "waiting_for_during"
    );
    let next = select(&html, "tr[data-delivery] td.next");
    assert!(
        next[0].contains("during-call webhook") && next[1].contains("+03:00"),
        "{next:?}"
    );
    let text = html.root_element().text().collect::<String>();
    assert!(text.contains("http_500"), "the failure text in the log");
}
