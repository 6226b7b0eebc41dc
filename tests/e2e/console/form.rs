//! The scenario form (errors at their field, preview, secret, delete),
//! the test send and the pool page.

use scraper::{Html, Selector};
use serde_json::json;
use sqlx::PgPool;

use super::{
    attr, client, form_as_shown, saved_scenario_id, select, set_cookie, sign_in, Operator,
};
use crate::helpers::*;

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
    let id = saved_scenario_id(&good);
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
    // The signed request shown is the one that arrived.
    let shown = select(&html, "#test-request pre").pop().unwrap();
    let (head, body) = shown.split_once("\n\n").unwrap();
    assert_eq!(body.as_bytes(), got.body, "the exact body");
    assert_eq!(
        head.lines().next().unwrap(),
        format!("POST {}", rx.url("/after"))
    );
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert!(
            head.lines()
                .any(|l| l == format!("{name}: {}", got.header(name))),
            "{name} in {head}"
        );
    }
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_preview_follows_the_form_as_it_is_typed_and_saves_nothing(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), |c| c.role = callhook::Role::Api).await;
    let http = client();
    let r = sign_in(&app, &http, ADMIN).await;
    let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();
    let new = http
        .get(app.url("/console/scenarios/new?lang=en"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let html = Html::parse_document(&new.text().await.unwrap());
    let csrf = attr(&html, "form#settings input[name=csrf]", "value");
    assert_eq!(
        attr(&html, "form#settings", "hx-post"),
        "/console/scenarios/preview?lang=en"
    );
    assert_eq!(
        select(&html, "#previews pre.preview").len(),
        2,
        "the new form previews both bodies"
    );
    let preview = |fields: &'static str, csrf: String| {
        let (http, session, url) = (
            http.clone(),
            session.clone(),
            app.url("/console/scenarios/preview?lang=en"),
        );
        async move {
            let r = http
                .post(url)
                .header("cookie", session)
                .header("hx-request", "true")
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("name", ""),
                    ("during_call_url", ""),
                    ("after_call_url", ""),
                    ("custom_fields", fields),
                    ("numbers", ""),
                    ("static_numbers", ""),
                    ("timezone", "Asia/Yekaterinburg"),
                ])
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                Html::parse_document(&r.text().await.unwrap()),
            )
        }
    };
    let (status, html) = preview("crm={marker}-{city}", csrf.clone()).await;
    assert_eq!(status, 200);
    let bodies = select(&html, "#previews pre.preview");
    let during: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(during["custom_fields"]["crm"], "vk_new-Москва", "{during}");
    assert_eq!(during["date"], "2019-02-19 00:00:00");
    let (_, html) = preview("=nameless", csrf.clone()).await;
    assert_eq!(
        attr(&html, "#previews p.preview-error", "data-field"),
        "custom_fields[0].name"
    );
    let (status, _) = preview("crm=x", "forged".into()).await;
    assert_eq!(status, 403, "the preview checks the CSRF token too");
    let saved: i64 = sqlx::query_scalar("select count(*) from scenarios")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(saved, 0, "a preview saves nothing");
}

/// Custom fields that `name=value` lines cannot hold exactly (the API takes
/// them) are shown read-only and saved back as they are, never rewritten;
/// a line without `=` is refused with the line named, not saved as a field
/// with an empty value.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn custom_fields_lines_cannot_hold_are_kept_exactly_and_a_line_without_equals_is_refused(
    pool: PgPool,
) {
    let app = spawn_app(pool.clone()).await;
    let fields = json!([
        {"name": "a=b", "value": "x"},
        {"name": "note", "value": "line one\nline two"},
        {"name": "source", "value": "{utm_source}"}
    ]);
    let (status, s) = app
        .admin_post(
            "/api/v1/scenarios",
            &json!({"name": "Odd", "numbers": ["74950000001"], "custom_fields": fields}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let id = s["id"].as_str().unwrap().to_owned();
    let op = Operator::sign_in(&app).await;
    let html = op
        .page(&app, &format!("/console/scenarios/{id}?lang=en"))
        .await;
    assert!(
        html.select(&Selector::parse("textarea#custom_fields[readonly]").unwrap())
            .next()
            .is_some(),
        "shown read-only"
    );
    assert_eq!(
        select(&html, "#custom_fields_json").len(),
        1,
        "and says why"
    );
    let saved = op
        .post(
            &app,
            &format!("/console/scenarios/{id}?lang=en"),
            &form_as_shown(&html),
        )
        .await;
    assert_eq!(saved.status(), 303, "saved unchanged");
    let stored: serde_json::Value =
        sqlx::query_scalar("select custom_fields from scenarios where id = $1::uuid")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, fields, "kept exactly");

    // A new scenario with a line lacking '=': refused, the line named.
    let html = op.page(&app, "/console/scenarios/new?lang=en").await;
    let mut form = form_as_shown(&html);
    for (k, v) in form.iter_mut() {
        match k.as_str() {
            "name" => *v = "Typo".into(),
            "numbers" => *v = "74950000002".into(),
            "custom_fields" => *v = "source={utm_source}\nmedium".into(),
            _ => {}
        }
    }
    let refused = op.post(&app, "/console/scenarios/new?lang=en", &form).await;
    assert_eq!(refused.status(), 422);
    let html = Html::parse_document(&refused.text().await.unwrap());
    let errors = select(&html, "span.field-error[data-field=custom_fields]");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("line 2") && errors[0].contains("medium"),
        "{errors:?}"
    );
    let count: i64 = sqlx::query_scalar("select count(*) from scenarios")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1, "nothing saved");
}

/// Three mistakes take one save to see: every field's error at once, each
/// at its field; a number another scenario holds is named by that
/// scenario's name; a save that goes through says so.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_form_shows_every_error_at_once_names_the_other_scenario_and_says_saved(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    app.create_scenario(json!({"name": "Shop, Yekaterinburg", "numbers": ["73432000001"]}))
        .await;
    let op = Operator::sign_in(&app).await;
    let html = op.page(&app, "/console/scenarios/new?lang=en").await;
    let shown = form_as_shown(&html);
    let post = |changes: Vec<(&'static str, &'static str)>| {
        let mut form = shown.clone();
        for (k, v) in form.iter_mut() {
            if let Some((_, new)) = changes.iter().find(|(c, _)| c == k) {
                *v = (*new).to_owned();
            }
        }
        let (op, app) = (&op, &app);
        async move { op.post(app, "/console/scenarios/new?lang=en", &form).await }
    };
    let refused = post(vec![
        ("name", "Landing"),
        ("during_call_url", "crm.example.com/hook"),
        ("custom_fields", "source={utm_source}\nmedium"),
        ("numbers", "+7 (800) 55"),
    ])
    .await;
    assert_eq!(refused.status(), 422);
    let html = Html::parse_document(&refused.text().await.unwrap());
    let at: Vec<String> = html
        .select(&Selector::parse("span.field-error").unwrap())
        .map(|e| e.value().attr("data-field").unwrap().to_owned())
        .collect();
    assert_eq!(
        at,
        ["during_call_url", "custom_fields", "numbers"],
        "every error at once, in the form's order"
    );
    assert_eq!(select(&html, "#form-errors li").len(), 3);

    // A number the other scenario holds: named by its name.
    let taken = post(vec![("name", "Landing"), ("numbers", "73432000001")]).await;
    assert_eq!(taken.status(), 422);
    let html = Html::parse_document(&taken.text().await.unwrap());
    let errors = select(&html, "span.field-error[data-field=numbers]");
    assert!(
        errors.len() == 1 && errors[0].contains("\"Shop, Yekaterinburg\""),
        "{errors:?}"
    );

    // A save that goes through lands on the scenario's page, saying so.
    let saved = post(vec![("name", "Landing"), ("numbers", "74950000003")]).await;
    assert_eq!(saved.status(), 303);
    let to = saved.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.contains("saved=1"), "{to}");
    let html = op.page(&app, &to).await;
    assert_eq!(select(&html, "#saved"), ["Saved."]);
}
