//! The console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/chromium-ensure` when missing):
//! sign in, create a scenario through the form (a bad URL first), find a
//! call in the delivery log, send it again, sign out. Where Chromium cannot
//! be installed the test says so and skips.
//!
//! Chromium is told to resolve nothing but this machine, and its
//! background services are off: no request leaves the machine.

use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;
use crate::process::free_port;

/// chromedriver's path, installing Chromium where it is missing; `None`
/// (with the reason printed) where that cannot be done.
fn chromedriver() -> Option<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/chromium-ensure");
    let out = std::process::Command::new(script).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "SKIPPED browser test: Chromium is not available here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(crate) struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium session (and its driver, stopped when dropped), the
/// window `width` × `height`; `None` where Chromium is not available.
pub(crate) async fn open_browser(width: u32, height: u32) -> Option<(fantoccini::Client, Driver)> {
    let path = chromedriver()?;
    // fantoccini's TLS stack (unused here: the driver is on loopback) needs
    // a process-wide rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = free_port();
    let driver = Driver(
        std::process::Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    eventually(
        Duration::from_secs(20),
        "chromedriver to listen",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-default-apps",
            "--disable-domain-reliability", "--no-pings", "--disable-client-side-phishing-detection",
            "--metrics-recording-only", "--lang=en-US", "--hide-scrollbars",
            format!("--window-size={width},{height}"),
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--proxy-server=direct://", "--proxy-bypass-list=*"
        ]}),
    );
    let c = ClientBuilder::rustls()
        .expect("a TLS config")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    Some((c, driver))
}

/// The element `css`, once the page has it: a click that submits a form
/// returns before the next page is in.
async fn element(c: &fantoccini::Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} on the page: {e}"))
}

/// Signs in with the admin token, as a person would, and waits for the
/// scenarios page.
async fn sign_in(c: &fantoccini::Client, app: &TestApp) {
    c.goto(&app.url("/console/login?lang=en")).await.unwrap();
    element(c, "input[name=token]")
        .await
        .send_keys(ADMIN)
        .await
        .unwrap();
    element(c, "form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    element(c, "a#add").await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_person_signs_in_creates_a_scenario_and_resends_a_call_in_a_real_browser(pool: PgPool) {
    let Some((c, _driver)) = open_browser(1280, 900).await else {
        return;
    };
    let mut rx = Receiver::ok().await;
    let app = spawn_app(pool.clone()).await;
    // A click that submits a form returns before the next page is in:
    // wait for what the next page holds, and for its address.
    let find = |css: &'static str| {
        let c = c.clone();
        async move { element(&c, css).await }
    };
    let at = |prefix: &'static str| {
        let c = c.clone();
        async move {
            eventually(
                Duration::from_secs(15),
                &format!("the browser at {prefix}"),
                || async {
                    c.current_url()
                        .await
                        .ok()
                        .filter(|u| u.path().starts_with(prefix))
                        .map(|_| ())
                },
            )
            .await
        }
    };

    // Sign in.
    c.goto(&app.url("/console?lang=en")).await.unwrap();
    at("/console/login").await;
    find("input[name=token]")
        .await
        .send_keys(ADMIN)
        .await
        .unwrap();
    find("form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    find("a#add").await;

    // A scenario through the form: a bad URL first, its error at its field.
    find("a#add").await.click().await.unwrap();
    find("input#name")
        .await
        .send_keys("Main site")
        .await
        .unwrap();
    find("input#during_call_url")
        .await
        .send_keys("not a url")
        .await
        .unwrap();
    find("textarea#numbers")
        .await
        .send_keys("78005552233")
        .await
        .unwrap();
    find("form#settings button#save")
        .await
        .click()
        .await
        .unwrap();
    let error = find("span.field-error").await;
    assert_eq!(
        error.attr("data-field").await.unwrap().as_deref(),
        Some("during_call_url")
    );
    // The preview follows the custom fields as they are typed (htmx).
    find("textarea#custom_fields")
        .await
        .send_keys("crm={marker}")
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "the live preview to show the custom field",
        || async {
            let pre = c
                .find(Locator::Css("pre.preview[data-kind=during_call]"))
                .await
                .ok()?;
            pre.text()
                .await
                .ok()
                .filter(|t| t.contains(r#""crm": "vk_new""#))
        },
    )
    .await;
    let url = find("input#during_call_url").await;
    url.clear().await.unwrap();
    url.send_keys(&rx.url("/during")).await.unwrap();
    find("form#settings button#save")
        .await
        .click()
        .await
        .unwrap();
    find("a#pool").await;
    at("/console/scenarios/").await;
    assert_eq!(find("h1").await.text().await.unwrap(), "Main site");

    // The log open, a call through the ingest API appears in it live (htmx,
    // under the page's CSP), is opened and sent again.
    c.goto(&app.url("/console/deliveries?lang=en"))
        .await
        .unwrap();
    find("span#live-note").await;
    let delivery = start_call(&app, "313").await;
    rx.next(Duration::from_secs(20)).await;
    wait_state(&pool, delivery, "delivered", Duration::from_secs(20)).await;
    let row = find("td.call a").await;
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/deliveries"),
        "the row came without leaving the page"
    );
    row.click().await.unwrap();
    at("/console/calls/313").await;
    find("button.resend").await.click().await.unwrap();
    let again = rx.next(Duration::from_secs(20)).await;
    assert_eq!(again.header("webhook-id"), delivery.to_string());

    // Sign out.
    find("header form button").await.click().await.unwrap();
    find("input[name=token]").await;
    c.goto(&app.url("/console")).await.unwrap();
    at("/console/login").await;
    find("input[name=token]").await;
    c.close().await.unwrap();
}

/// The support ticket, solved as an operator would in Chromium: "our CRM
/// says notifications don't arrive". The receiver answered 500, three
/// calls wait on a 5-minute retry schedule; the receiver is fixed; one
/// click on "Send now" for the during-call endpoint on the health page sends
/// every waiting webhook at once, each call's during-call one first.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_support_ticket_is_solved_with_one_send_now_in_a_real_browser(pool: PgPool) {
    let Some((c, _driver)) = open_browser(1280, 900).await else {
        return;
    };
    let Ticket {
        mut rx,
        app,
        scenario: s,
    } = failing_crm(&pool, &["k1", "k2", "k3"]).await;
    // The receiver is fixed.
    rx.answer(Reply::Status(200));

    // The operator signs in, opens the health page and clicks Send now.
    let find = |css: String| {
        let c = c.clone();
        async move { element(&c, &css).await }
    };
    sign_in(&c, &app).await;
    c.goto(&app.url("/console/health?lang=en")).await.unwrap();
    find(format!(
        "tr[data-scenario='{s}'][data-kind=during_call] form.send-now button"
    ))
    .await
    .click()
    .await
    .unwrap();

    // Every waiting webhook arrives, each call's during-call one first.
    each_call_during_first(&mut rx, &["k1", "k2", "k3"]).await;
    c.close().await.unwrap();
}

/// A condition added as a row in Chromium: the dry run follows it as its
/// field, operator and value are picked and typed (htmx, under the page's
/// CSP), and it is saved.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_condition_row_is_added_tried_live_and_saved_in_a_real_browser(pool: PgPool) {
    let Some((c, _driver)) = open_browser(1280, 900).await else {
        return;
    };
    let app = spawn_app(pool.clone()).await;
    let s = app
        .create_scenario(json!({"name": "CRM", "numbers": ["78005552233"]}))
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    crate::rules::call(&app, "b1", "79990000001", Some(("ANSWER", 20))).await;
    crate::rules::call(&app, "b2", "79990000002", Some(("ANSWER", 5))).await;
    let find = |css: &'static str| {
        let c = c.clone();
        async move { element(&c, css).await }
    };
    sign_in(&c, &app).await;
    c.goto(&app.url(&format!("/console/scenarios/{id}?lang=en")))
        .await
        .unwrap();
    let cell = |css: &'static str| {
        let c = c.clone();
        async move { c.find(Locator::Css(css)).await.ok()?.text().await.ok() }
    };
    assert_eq!(
        cell("#dry-run tr[data-kind=after_call] .sent")
            .await
            .as_deref(),
        Some("2"),
        "no conditions yet: both ended calls"
    );

    // A row, its field and operator picked, its value typed.
    find("button.add-row[value='add:after_call_filter']")
        .await
        .click()
        .await
        .unwrap();
    find("select[name='after_call_filter[0].field']")
        .await
        .select_by_value("duration")
        .await
        .unwrap();
    find("select[name='after_call_filter[0].op']")
        .await
        .select_by_value("gte")
        .await
        .unwrap();
    find("input[name='after_call_filter[0].value']")
        .await
        .send_keys("10")
        .await
        .unwrap();
    // The value's change is told when it loses the focus.
    find("fieldset#after_call_filter legend")
        .await
        .click()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "the dry run to follow the condition",
        || async {
            cell("#dry-run tr[data-kind=after_call] .filtered")
                .await
                .filter(|t| t == "1")
        },
    )
    .await;
    assert_eq!(
        cell("#dry-run tr[data-kind=after_call] .sent-calls")
            .await
            .as_deref(),
        Some("b1")
    );

    find("form#settings button#save")
        .await
        .click()
        .await
        .unwrap();
    find("#saved").await;
    let (_, api) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    assert_eq!(
        api["after_call_filter"],
        json!([{"field": "duration", "op": "gte", "value": 10}])
    );
    c.close().await.unwrap();
}
