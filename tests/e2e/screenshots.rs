//! The console's screenshots in `docs/console/`, taken in a real headless
//! Chromium from a database this seeds through the API (two scenarios, a
//! receiver that answers 200 and one that answers 500, visits, calls).
//! `scripts/console-screenshots` runs it; `make test` does not (it is
//! ignored: it writes into the checkout).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;
use sqlx::PgPool;

use crate::browser::open_browser;
use crate::helpers::*;

/// Saves what the browser shows as `docs/console/{name}.png` (or under
/// `CALLHOOK_SCREENSHOTS`).
async fn shot(c: &Client, name: &str) {
    let dir = std::env::var_os("CALLHOOK_SCREENSHOTS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/console")),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("wrote {}", path.display());
}

/// Opens `path` and waits for `css` on it.
async fn open(c: &Client, app: &TestApp, path: &str, css: &str) {
    c.goto(&app.url(path)).await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} on {path}: {e}"));
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
#[ignore = "writes docs/console/*.png: run scripts/console-screenshots"]
async fn console_screenshots(pool: PgPool) {
    let (c, _driver) = open_browser(1280, 1000)
        .await
        .expect("the screenshots need Chromium (scripts/chromium-ensure)");
    let crm = Receiver::ok().await;
    let broken = Receiver::scripted(vec![], Reply::Status(500)).await;
    let app = spawn_app(pool.clone()).await;

    // The seed.
    let main = app
        .create_scenario(json!({
            "name": "Main site",
            "numbers": ["78005552233", "78005552234", "78005552235", "78005552236"],
            "static_numbers": [{"number": "78005550000", "marker": "print", "source_level_1": "offline"}],
            "during_call_url": crm.url("/crm/calls/during"),
            "after_call_url": crm.url("/crm/calls/after"),
            "custom_fields": [{"name": "crm_source", "value": "{source_level_1}/{marker}"}],
            "after_call_filter": [{"field": "status", "op": "in", "value": ["ANSWER"]},
                                  {"field": "duration", "op": "gte", "value": 10}],
            "after_call_headers": [{"name": "Authorization", "value": "Bearer crm-key", "secret": true},
                                   {"name": "X-Api-Version", "value": "2"}],
            "timezone": "Europe/Moscow"
        }))
        .await;
    let main = main["id"].as_str().unwrap().to_owned();
    let shop = app
        .create_scenario(json!({
            "name": "Shop, Yekaterinburg",
            "numbers": ["73432000001"],
            "during_call_url": broken.url("/hook.php"),
            "timezone": "Asia/Yekaterinburg"
        }))
        .await;
    let shop = shop["id"].as_str().unwrap().to_owned();
    for visit in ["v1001", "v1002"] {
        let (status, body) = app
            .ingest_post(
                "/api/v1/visits",
                &json!({"scenario_id": main, "visit_id": visit, "marker": "vk_new"}),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }
    for i in 1..=6 {
        let id = format!("10{i}");
        let mut call = page_call(&id);
        call["caller"] = json!(format!("7999000991{i}"));
        let (status, body) = app.ingest_post("/api/v1/calls", &call).await;
        assert_eq!(status.as_u16(), 202, "{body}");
        let (status, body) = app
            .ingest_post(
                &format!("/api/v1/calls/{id}/end"),
                &json!({"status": "ANSWER", "duration": 20 + 7 * i, "link": format!("https://records.example/{id}.mp3")}),
            )
            .await;
        assert!(status.is_success(), "{body}");
    }
    for i in 1..=3 {
        let mut call = page_call(&format!("20{i}"));
        call["callee"] = json!("73432000001");
        let (status, body) = app.ingest_post("/api/v1/calls", &call).await;
        assert_eq!(status.as_u16(), 202, "{body}");
    }
    eventually(
        Duration::from_secs(60),
        "the seed's deliveries to settle",
        || async {
            let delivered = count(
                &pool,
                "select count(*) from deliveries where state = 'delivered'",
            )
            .await;
            let failed = count(
                &pool,
                "select count(*) from deliveries where state = 'failed'",
            )
            .await;
            (delivered == 12 && failed == 3).then_some(())
        },
    )
    .await;

    // The screens.
    open(&c, &app, "/console/login?lang=en", "input[name=token]").await;
    shot(&c, "login").await;
    c.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(ADMIN)
        .await
        .unwrap();
    click(&c, "form button[type=submit]").await;
    open(&c, &app, "/console?lang=en", "a#add").await;
    shot(&c, "scenarios").await;
    open(
        &c,
        &app,
        &format!("/console/scenarios/{main}?lang=en"),
        "pre.preview",
    )
    .await;
    shot(&c, "scenario-form").await;
    c.execute(
        "document.querySelector('fieldset#during_call_filter').scrollIntoView({block: 'start'})",
        vec![],
    )
    .await
    .unwrap();
    shot(&c, "scenario-rules").await;
    click(&c, "button.test-send[data-kind=during_call]").await;
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#test-result"))
        .await
        .unwrap();
    c.execute(
        "document.querySelector('#test-result').scrollIntoView({block: 'center'})",
        vec![],
    )
    .await
    .unwrap();
    shot(&c, "test-send").await;
    // A new scenario with three mistakes: every one shown at once, at its field.
    open(&c, &app, "/console/scenarios/new?lang=en", "form#settings").await;
    for (css, text) in [
        ("input#name", "Landing page"),
        ("input#during_call_url", "crm.example.com/hook"),
        ("textarea#custom_fields", "source={utm_source}\nmedium"),
        ("textarea#numbers", "+7 (800) 55"),
    ] {
        c.find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }
    click(&c, "form#settings button#save").await;
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#form-errors"))
        .await
        .unwrap();
    let marked = c.find_all(Locator::Css("span.field-error")).await.unwrap();
    assert_eq!(marked.len(), 3, "three errors at once");
    shot(&c, "scenario-form-errors").await;
    open(&c, &app, "/console/deliveries?lang=en", "tr[data-delivery]").await;
    shot(&c, "deliveries").await;
    open(&c, &app, "/console/calls/101?lang=en", "section.delivery").await;
    shot(&c, "call").await;
    open(&c, &app, "/console/recover?lang=en", "form#recover").await;
    c.find(Locator::Css(&format!(
        "select#scenario_id option[value='{shop}']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    click(&c, "form#recover button[type=submit]").await;
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#count"))
        .await
        .unwrap();
    shot(&c, "recover").await;
    open(
        &c,
        &app,
        &format!("/console/scenarios/{main}/pool?lang=en"),
        "table",
    )
    .await;
    shot(&c, "pool").await;
    open(&c, &app, "/console/health?lang=en", "table").await;
    shot(&c, "health").await;
    open(&c, &app, "/console?lang=ru", "a#add").await;
    shot(&c, "scenarios-ru").await;
    open(&c, &app, "/console/scenarios/new?lang=ru", "form#settings").await;
    shot(&c, "scenario-new-ru").await;
    c.close().await.unwrap();
}
