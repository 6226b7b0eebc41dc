//! The operator's console: sign-in, sessions, CSRF, and the pages, read
//! as HTML. The delivery log and a call's page are in `log`, the scenario
//! form and the pool in `form`.

use reqwest::header::{HeaderMap, SET_COOKIE};
use scraper::{Html, Selector};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

mod errors;
mod form;
mod log;
mod parity;
mod rules;
mod timeline;

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `name=value` of a `Set-Cookie` for `name`, and the whole header.
pub(super) fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let whole = v.to_str().ok()?.to_owned();
        let pair = whole.split(';').next()?.trim().to_owned();
        pair.starts_with(&format!("{name}="))
            .then_some((pair, whole))
    })
}

pub(super) fn select(html: &Html, css: &str) -> Vec<String> {
    html.select(&Selector::parse(css).unwrap())
        .map(|e| e.text().collect::<String>().trim().to_owned())
        .collect()
}

pub(super) fn attr(html: &Html, css: &str, name: &str) -> String {
    html.select(&Selector::parse(css).unwrap())
        .next()
        .unwrap_or_else(|| panic!("{css} on the page"))
        .value()
        .attr(name)
        .unwrap()
        .to_owned()
}

/// Every named input, textarea and picker of the settings form, as a
/// browser would send it unchanged (a checkbox only when checked, a picker's
/// chosen option, else its first; no button).
pub(super) fn form_as_shown(html: &Html) -> Vec<(String, String)> {
    let css = "form#settings input[name], form#settings textarea[name], form#settings select[name]";
    let mut out = Vec::new();
    for e in html.select(&Selector::parse(css).unwrap()) {
        let name = e.value().attr("name").unwrap().to_owned();
        let value = match e.value().name() {
            "textarea" => e.text().collect::<String>(),
            "select" => {
                let options: Vec<_> = e.select(&Selector::parse("option").unwrap()).collect();
                let Some(o) = options
                    .iter()
                    .find(|o| o.value().attr("selected").is_some())
                    .or(options.first())
                else {
                    continue;
                };
                o.value()
                    .attr("value")
                    .map_or_else(|| o.text().collect(), str::to_owned)
            }
            _ if e.value().attr("type") == Some("checkbox") => {
                if e.value().attr("checked").is_none() {
                    continue;
                }
                e.value().attr("value").unwrap_or("on").to_owned()
            }
            _ => e.value().attr("value").unwrap_or("").to_owned(),
        };
        out.push((name, value));
    }
    out
}

/// Signs in with `token`; the session cookie (`name=value`).
pub(super) async fn sign_in(
    app: &TestApp,
    http: &reqwest::Client,
    token: &str,
) -> reqwest::Response {
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

/// The scenario a saved form redirected to (`/console/scenarios/{id}?…`).
pub(super) fn saved_scenario_id(saved: &reqwest::Response) -> String {
    saved.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/console/scenarios/")
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

/// A signed-in operator's browser, as far as the tests need one: a client
/// that follows no redirect and the session cookie.
pub(super) struct Operator {
    pub(super) http: reqwest::Client,
    pub(super) session: String,
}

impl Operator {
    pub(super) async fn sign_in(app: &TestApp) -> Self {
        let http = client();
        let r = sign_in(app, &http, ADMIN).await;
        let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();
        Self { http, session }
    }

    /// The status and page at `path`.
    pub(super) async fn get(&self, app: &TestApp, path: &str) -> (u16, Html) {
        let r = self
            .http
            .get(app.url(path))
            .header("cookie", &self.session)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, Html::parse_document(&r.text().await.unwrap()))
    }

    /// The page at `path`, which must answer 200.
    pub(super) async fn page(&self, app: &TestApp, path: &str) -> Html {
        let (status, html) = self.get(app, path).await;
        assert_eq!(status, 200, "{path}");
        html
    }

    /// Posts `form` to `path` as htmx does (`hx-request`): the answer is
    /// the fragment it swaps in.
    pub(super) async fn htmx_post(
        &self,
        app: &TestApp,
        path: &str,
        form: &[(String, String)],
    ) -> reqwest::Response {
        self.form_post(app, path, form)
            .header("hx-request", "true")
            .send()
            .await
            .unwrap()
    }

    /// Posts `form` to `path`, as the browser would.
    pub(super) async fn post(
        &self,
        app: &TestApp,
        path: &str,
        form: &[(String, String)],
    ) -> reqwest::Response {
        self.form_post(app, path, form).send().await.unwrap()
    }

    /// A form post to `path` in this session.
    fn form_post(
        &self,
        app: &TestApp,
        path: &str,
        form: &[(String, String)],
    ) -> reqwest::RequestBuilder {
        self.http
            .post(app.url(path))
            .header("cookie", &self.session)
            .form(form)
    }
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

    // The old cookie, kept by whoever copied it, opens nothing any more:
    // not a page, not a change (another process reads the same sign-out).
    let page = http
        .get(app.url("/console"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303, "to the sign-in page");
    assert!(page.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/console/login"));
    let replayed = http
        .post(app.url(&format!(
            "/console/scenarios/{id}/endpoints/during_call/enable"
        )))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 303);
    assert!(replayed.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/console/login"));
    let (_, scenario) = app.admin_get(&format!("/api/v1/scenarios/{id}")).await;
    assert_eq!(
        scenario["health"]["during_call"]["state"], "paused",
        "the signed-out session changed nothing"
    );
    let other = spawn_app(pool.clone()).await;
    let elsewhere = http
        .get(other.url("/console"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 303, "signed out on every process");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn the_console_can_be_turned_off(pool: PgPool) {
    // On, `/` leads to it.
    let on = spawn_app(pool.clone()).await;
    let r = client().get(on.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console");
    let app = spawn_app_with(pool, |c| c.console = false).await;
    let r = client()
        .get(app.url("/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client().get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 404, "off: `/` is no route");
}
