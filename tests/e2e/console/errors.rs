//! The console answers a browser in HTML, never the API's JSON: an error
//! page with the status and the message (the field named where there is
//! one), in the page's language; an htmx request gets the fragment alone.

use scraper::Html;
use sqlx::PgPool;

use super::{client, select, set_cookie, sign_in, Operator};
use crate::helpers::*;

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn console_errors_are_html_pages_naming_the_field(pool: PgPool) {
    let app = spawn_app(pool).await;
    let http = client();
    let r = sign_in(&app, &http, ADMIN).await;
    let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();
    let missing = uuid::Uuid::now_v7();

    // A scenario that is not there: a 404 page, in the language asked for.
    for (lang, heading) in [("en", "Error 404"), ("ru", "Ошибка 404")] {
        let r = http
            .get(app.url(&format!("/console/scenarios/{missing}?lang={lang}")))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/html"), "{kind}");
        assert!(r.headers().contains_key("content-security-policy"));
        let html = Html::parse_document(&r.text().await.unwrap());
        assert_eq!(select(&html, "h1"), [heading]);
        let alert = select(&html, "p.error").join(" ");
        assert!(
            alert.contains(&format!("scenario {missing} does not exist")),
            "{alert}"
        );
    }

    // A bad kind in a form post: a 422 naming the field, as the API's.
    let page = http
        .get(app.url("/console/scenarios/new?lang=en"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let html = Html::parse_document(&page.text().await.unwrap());
    let csrf = super::attr(&html, "form#settings input[name=csrf]", "value");
    let r = http
        .post(app.url(&format!(
            "/console/scenarios/{missing}/endpoints/operator_event/pause?lang=en"
        )))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let html = Html::parse_document(&r.text().await.unwrap());
    assert_eq!(select(&html, "p.error code"), ["kind"]);
    assert!(
        select(&html, "p.error")[0].contains("kind must be during_call or after_call"),
        "{:?}",
        select(&html, "p.error")
    );

    // htmx swaps the answer into the page: the fragment alone.
    let r = http
        .get(app.url(&format!("/console/scenarios/{missing}/pool?lang=en")))
        .header("cookie", &session)
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(
        body.trim_start().starts_with("<p class=\"error\"") && !body.contains("<html"),
        "{body}"
    );
}

/// A Russian page says what is wrong in Russian: the form's errors (at the
/// field and in the list above the form, the field named), the delivery
/// log's filter error, an error page; an English page keeps the API's
/// English message.
#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_russian_page_shows_validation_errors_in_russian(pool: PgPool) {
    let app = spawn_app(pool).await;
    let op = Operator::sign_in(&app).await;
    let html = op.page(&app, "/console/scenarios/new?lang=ru").await;
    let csrf = super::attr(&html, "form#settings input[name=csrf]", "value");
    let form = |lang: &'static str| {
        let fields: Vec<(String, String)> = [
            ("csrf", csrf.as_str()),
            ("name", "Сайт"),
            ("during_call_url", "crm.example.com/hook"),
            ("after_call_url", ""),
            ("custom_fields", ""),
            ("numbers", "+7 (800) 555-22-33"),
            ("static_numbers", ""),
            ("timezone", "Europe/Moscow"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        let (op, app) = (&op, &app);
        async move {
            let r = op
                .post(app, &format!("/console/scenarios/new?lang={lang}"), &fields)
                .await;
            assert_eq!(r.status(), 422);
            Html::parse_document(&r.text().await.unwrap())
        }
    };

    let html = form("ru").await;
    let at_field = select(&html, "span.field-error[data-field=during_call_url]");
    assert_eq!(at_field.len(), 1, "{at_field:?}");
    assert!(
        at_field[0].starts_with("Нужен полный адрес http:// или https://"),
        "{at_field:?}"
    );
    assert!(!at_field[0].contains("URL must"), "{at_field:?}");
    assert_eq!(
        select(&html, "#form-errors p"),
        ["Не сохранено: исправьте отмеченные поля."]
    );
    let listed = select(&html, "#form-errors li");
    assert!(
        listed.len() == 1
            && listed[0].starts_with("Адрес для вебхука во время звонка: Нужен полный адрес"),
        "{listed:?}"
    );

    // The same form in English: the API's message, as it was.
    let html = form("en").await;
    let at_field = select(&html, "span.field-error[data-field=during_call_url]");
    assert!(
        at_field.len() == 1 && at_field[0].starts_with("URL must be absolute http:// or https://"),
        "{at_field:?}"
    );

    // A filter the delivery log cannot read.
    let (status, html) = op.get(&app, "/console/deliveries?lang=ru&state=lost").await;
    assert_eq!(status, 422);
    assert_eq!(
        select(&html, "p.error[data-field=state]"),
        ["Состояние: Нет такого состояния."]
    );

    // An error page: a kind the path does not know.
    let path = format!(
        "/console/scenarios/{}/endpoints/operator_event/pause?lang=ru",
        uuid::Uuid::now_v7()
    );
    let r = op.post(&app, &path, &[("csrf".into(), csrf.clone())]).await;
    assert_eq!(r.status(), 422);
    let html = Html::parse_document(&r.text().await.unwrap());
    assert_eq!(select(&html, "h1"), ["Ошибка 422"]);
    assert_eq!(
        select(&html, "p.error"),
        ["Нет такого вида отправки. (поле: Вид, kind)"]
    );
}
