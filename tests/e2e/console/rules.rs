//! The delivery rules in the scenario form: a row per condition and per
//! header, saved through the one operations layer (read back through the
//! REST API), errors beside their rows, a stored secret kept, and the dry
//! run equal to the REST API's.

use scraper::{Html, Selector};
use serde_json::{json, Value};
use sqlx::PgPool;

use super::{attr, form_as_shown, saved_scenario_id, select, Operator};
use crate::helpers::*;
use crate::rules::call;

/// Sets input `name` of a form as shown (added when absent).
fn set(form: &mut Vec<(String, String)>, name: &str, value: &str) {
    match form.iter_mut().find(|(k, _)| k == name) {
        Some((_, v)) => *v = value.to_owned(),
        None => form.push((name.to_owned(), value.to_owned())),
    }
}

/// The rows of list `list` on the page, by their names.
fn rows(html: &Html, list: &str) -> Vec<String> {
    html.select(&Selector::parse(&format!("fieldset#{list} div.rule-row")).unwrap())
        .map(|e| e.value().attr("data-row").unwrap().to_owned())
        .collect()
}

/// The values a picker offers.
fn options(html: &Html, picker: &str) -> Vec<String> {
    html.select(&Selector::parse(&format!("select[name='{picker}'] option")).unwrap())
        .map(|e| e.value().attr("value").unwrap().to_owned())
        .collect()
}

async fn parsed(r: reqwest::Response) -> (u16, Html) {
    let status = r.status().as_u16();
    (status, Html::parse_document(&r.text().await.unwrap()))
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn conditions_and_a_secret_header_saved_through_the_form_rows_read_back_through_the_api(
    pool: PgPool,
) {
    const TOKEN: &str = "Bearer crm-key-0c3f9a";
    let app = spawn_app(pool.clone()).await;
    let op = Operator::sign_in(&app).await;
    let new = "/console/scenarios/new?lang=en";
    let mut html = op.page(&app, new).await;
    assert_eq!(
        select(&html, "fieldset#after_call_filter p.every-call").len(),
        1
    );
    assert_eq!(
        select(&html, "#dry-run-new").len(),
        1,
        "a new scenario has no calls to try conditions on"
    );

    // The row buttons add rows; nothing is saved.
    for list in [
        "after_call_filter",
        "after_call_filter",
        "during_call_filter",
        "after_call_headers",
    ] {
        let mut form = form_as_shown(&html);
        form.push(("edit".into(), format!("add:{list}")));
        let (status, page) = parsed(op.post(&app, new, &form).await).await;
        assert_eq!(status, 200, "add:{list}");
        html = page;
    }
    assert_eq!(
        rows(&html, "after_call_filter"),
        ["after_call_filter[0]", "after_call_filter[1]"]
    );
    assert_eq!(rows(&html, "after_call_headers"), ["after_call_headers[0]"]);
    let count: i64 = sqlx::query_scalar("select count(*) from scenarios")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "adding rows saves nothing");
    // The pickers offer the core filter's fields and every operator.
    let after = options(&html, "after_call_filter[0].field");
    let during = options(&html, "during_call_filter[0].field");
    for f in ["status", "duration", "utm_source", "first_call"] {
        assert!(after.contains(&f.to_owned()), "{f} in {after:?}");
    }
    assert!(during.contains(&"marker".to_owned()) && !during.contains(&"status".to_owned()));
    assert_eq!(
        options(&html, "after_call_filter[0].op"),
        ["eq", "ne", "in", "not_in", "prefix", "gte", "lte", "present", "absent"]
    );

    // Two conditions and a secret header; the during-call row left blank.
    let mut form = form_as_shown(&html);
    for (k, v) in [
        ("name", "CRM"),
        ("numbers", "78005552233"),
        ("after_call_filter[0].field", "status"),
        ("after_call_filter[0].op", "in"),
        ("after_call_filter[0].value", "ANSWER, NOANSWER"),
        ("after_call_filter[1].field", "duration"),
        ("after_call_filter[1].op", "gte"),
        ("after_call_filter[1].value", "10"),
        ("after_call_headers[0].name", "Authorization"),
        ("after_call_headers[0].value", TOKEN),
        ("after_call_headers[0].secret", "on"),
    ] {
        set(&mut form, k, v);
    }
    let saved = op.post(&app, new, &form).await;
    assert_eq!(saved.status(), 303);
    let to = saved.headers()["location"].to_str().unwrap().to_owned();
    let id = saved_scenario_id(&saved);
    let (_, api) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    assert_eq!(
        api["after_call_filter"],
        json!([{"field": "status", "op": "in", "value": ["ANSWER", "NOANSWER"]},
               {"field": "duration", "op": "gte", "value": 10}])
    );
    assert!(
        api.get("during_call_filter").is_none(),
        "the blank row left out: none, so absent"
    );
    assert_eq!(
        api["after_call_headers"],
        json!([{"name": "Authorization", "value": null, "secret": true}])
    );

    // The saved scenario's page shows the rows again, the secret as set.
    let r = op
        .http
        .get(app.url(&to))
        .header("cookie", &op.session)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(!text.contains(TOKEN), "a secret is never shown");
    let html = Html::parse_document(&text);
    assert_eq!(
        attr(
            &html,
            "select[name='after_call_filter[1].field'] option[selected]",
            "value"
        ),
        "duration"
    );
    assert_eq!(
        attr(&html, "input[name='after_call_filter[0].value']", "value"),
        "ANSWER, NOANSWER"
    );
    assert_eq!(
        select(&html, "div[data-row='after_call_headers[0]'] .secret-set").len(),
        1
    );
    assert_eq!(
        attr(&html, "input[name='after_call_headers[0].value']", "value"),
        ""
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_bad_condition_value_is_shown_beside_its_row_named_as_the_api_names_it(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let s = app
        .create_scenario(json!({"name": "CRM", "numbers": ["78005552233"]}))
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    let op = Operator::sign_in(&app).await;
    let path = format!("/console/scenarios/{id}?lang=en");
    let mut form = form_as_shown(&op.page(&app, &path).await);
    for (k, v) in [
        ("after_call_filter[0].field", "status"),
        ("after_call_filter[0].op", "in"),
        ("after_call_filter[0].value", "ANSWER"),
        ("after_call_filter[1].field", "duration"),
        ("after_call_filter[1].op", "gte"),
        ("after_call_filter[1].value", "ten"),
        ("after_call_headers[0].name", "X-Key"),
        ("after_call_headers[0].value", "typed-secret-31"),
        ("after_call_headers[0].secret", "on"),
    ] {
        set(&mut form, k, v);
    }
    let (status, html) = parsed(op.post(&app, &path, &form).await).await;
    assert_eq!(status, 422);
    assert!(
        !html.html().contains("typed-secret-31"),
        "a secret typed is not sent back in the page"
    );
    let beside = |row: &str| -> Vec<String> {
        html.select(&Selector::parse(&format!("div[data-row='{row}'] span.field-error")).unwrap())
            .map(|e| e.value().attr("data-field").unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        beside("after_call_filter[1]"),
        ["after_call_filter[1].value"]
    );
    assert!(beside("after_call_filter[0]").is_empty());
    let error = select(
        &html,
        "div[data-row='after_call_filter[1]'] span.field-error",
    )
    .join("");
    assert!(
        error.contains("duration with gte takes a number"),
        "{error}"
    );
    assert_eq!(
        attr(&html, "#form-errors li", "data-field"),
        "after_call_filter[1].value"
    );
    assert_eq!(
        attr(&html, "input[name='after_call_filter[1].value']", "value"),
        "ten",
        "what was typed stays"
    );

    // The REST API names the same field for the same conditions.
    let (status, e) = app
        .admin_put(
            &format!("/api/v1/scenarios/{id}"),
            &json!({"name": "CRM", "numbers": ["78005552233"],
                    "after_call_filter": [{"field": "status", "op": "in", "value": ["ANSWER"]},
                                          {"field": "duration", "op": "gte", "value": "ten"}]}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(e["error"]["field"], "after_call_filter[1].value");
    let (_, api) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    assert!(api.get("after_call_filter").is_none(), "nothing saved");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn saving_the_form_without_touching_a_secret_header_keeps_its_stored_value(pool: PgPool) {
    use base64::Engine as _;
    const TOKEN: &str = "Bearer crm-key-7e1b22";
    let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    let mut rx = Receiver::ok().await;
    let app = spawn_app_with(pool.clone(), |c| c.keys.secret_key = Some(key.into())).await;
    let s = app
        .create_scenario(json!({
            "name": "CRM", "numbers": ["78005552233"], "after_call_url": rx.url("/after"),
            "after_call_headers": [{"name": "Authorization", "value": TOKEN, "secret": true},
                                   {"name": "X-Api-Version", "value": "2"}],
        }))
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    let sealed = || async {
        let v: Value =
            sqlx::query_scalar("select after_call_headers from scenarios where id = $1::uuid")
                .bind(&id)
                .fetch_one(&pool)
                .await
                .unwrap();
        v
    };
    let before = sealed().await;
    assert!(before[0]["value"].as_str().unwrap().starts_with("enc:"));

    let op = Operator::sign_in(&app).await;
    let path = format!("/console/scenarios/{id}?lang=en");
    let html = op.page(&app, &path).await;
    assert_eq!(
        attr(&html, "input[name='after_call_headers[0].value']", "type"),
        "password"
    );
    let mut form = form_as_shown(&html);
    set(&mut form, "name", "CRM, renamed");
    let saved = op.post(&app, &path, &form).await;
    assert_eq!(saved.status(), 303);
    let after = sealed().await;
    assert_eq!(after, before, "the sealed value is the one stored");
    let (_, api) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    assert_eq!(api["name"], "CRM, renamed");

    // The receiver still gets it.
    let (status, out) = app
        .admin_post(
            &format!("/api/v1/scenarios/{id}/test"),
            &json!({"kind": "after_call"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let got = rx.next(std::time::Duration::from_secs(10)).await;
    assert_eq!(got.header("authorization"), TOKEN);
    assert_eq!(got.header("x-api-version"), "2");
}

/// The counts and call ids of the dry run's table, per webhook.
fn dry_run_of(html: &Html) -> Value {
    let cell = |kind: &str, css: &str| {
        select(html, &format!("#dry-run tr[data-kind={kind}] {css}"))
            .pop()
            .unwrap_or_default()
    };
    let ids = |text: String| -> Vec<String> {
        text.split(", ")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let outcome = |kind: &str| {
        json!({
            "sent": cell(kind, ".sent").parse::<u64>().unwrap(),
            "filtered": cell(kind, ".filtered").parse::<u64>().unwrap(),
            "sent_calls": ids(cell(kind, ".sent-calls")),
            "filtered_calls": ids(cell(kind, ".filtered-calls")),
        })
    };
    json!({
        "calls": select(html, "#dry-run-calls").pop().unwrap().parse::<u64>().unwrap(),
        "during_call": outcome("during_call"),
        "after_call": outcome("after_call"),
    })
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_forms_dry_run_counts_what_the_rest_preview_counts(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let s = app
        .create_scenario(json!({"name": "CRM", "numbers": ["78005552233"]}))
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    call(&app, "a1", "79990000001", Some(("ANSWER", 20))).await;
    call(&app, "a2", "79990000001", Some(("ANSWER", 5))).await;
    call(&app, "a3", "79990000002", Some(("BUSY", 0))).await;
    call(&app, "a4", "79990000003", Some(("ANSWER", 30))).await;
    call(&app, "a5", "79990000004", None).await;
    let op = Operator::sign_in(&app).await;
    let path = format!("/console/scenarios/{id}?lang=en");
    let html = op.page(&app, &path).await;
    let stored = dry_run_of(&html);
    assert_eq!(
        stored["calls"], 5,
        "the stored (no) conditions, on the page"
    );
    assert_eq!(stored["after_call"]["sent"], 4, "the ended calls");

    let mut form = form_as_shown(&html);
    for (k, v) in [
        ("during_call_filter[0].field", "first_call"),
        ("during_call_filter[0].op", "eq"),
        ("during_call_filter[0].value", "true"),
        ("after_call_filter[0].field", "status"),
        ("after_call_filter[0].op", "in"),
        ("after_call_filter[0].value", "ANSWER"),
        ("after_call_filter[1].field", "duration"),
        ("after_call_filter[1].op", "gte"),
        ("after_call_filter[1].value", "10"),
    ] {
        set(&mut form, k, v);
    }
    let rest = |body: Value| {
        let (app, path) = (&app, format!("/api/v1/scenarios/{id}/filter-preview"));
        async move { app.admin_post(&path, &body).await }
    };
    let (status, expected) = rest(json!({
        "during_call_filter": [{"field": "first_call", "op": "eq", "value": true}],
        "after_call_filter": [{"field": "status", "op": "in", "value": ["ANSWER"]},
                              {"field": "duration", "op": "gte", "value": 10}],
    }))
    .await;
    assert_eq!(status, 200, "{expected}");
    assert_eq!(expected["after_call"]["sent"], 2);
    assert_eq!(expected["during_call"]["filtered"], 1);

    let preview = format!("/console/scenarios/{id}/filter-preview?lang=en");
    // Live (htmx posts the form as a condition changes): the fragment.
    let live = op.htmx_post(&app, &preview, &form).await;
    let (status, html) = parsed(live).await;
    assert_eq!(status, 200);
    assert_eq!(dry_run_of(&html), expected, "the REST API's counts");

    // Without JavaScript, the form's "Try" button: the whole page.
    let mut tried = form.clone();
    tried.push(("edit".into(), "try".into()));
    let (status, html) = parsed(op.post(&app, &path, &tried).await).await;
    assert_eq!(status, 200);
    assert_eq!(dry_run_of(&html), expected);
    let (_, api) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    assert!(
        api.get("after_call_filter").is_none(),
        "a dry run saves nothing"
    );

    // A condition the check refuses: named, as the REST API names it.
    set(&mut form, "after_call_filter[1].value", "ten");
    let live = op.htmx_post(&app, &preview, &form).await;
    let (_, html) = parsed(live).await;
    assert_eq!(
        attr(&html, "#filter-preview p.dry-run-error", "data-field"),
        "after_call_filter[1].value"
    );
}
