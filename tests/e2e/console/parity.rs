//! One operation, two front ends: each admin operation done through the
//! REST API on one scenario and through the console on a twin leaves the
//! same store state, the same operator events and the same audit record
//! (ids, numbers and moments aside). Each test waits for a state read from
//! Postgres (nothing pending) before it compares.

use std::time::Duration;

use scraper::Html;
use serde_json::{json, Value};
use sqlx::PgPool;

use super::{attr, client, set_cookie, sign_in};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);
/// Nothing listens there: every attempt fails at once (`connect`).
const REFUSED: &str = "http://127.0.0.1:1/down";

/// The app with operator events on, and a signed-in console.
struct Fronts {
    app: TestApp,
    http: reqwest::Client,
    session: String,
    csrf: String,
    ok: Receiver,
    _ops: Receiver,
}

/// One side of a comparison: its scenario, number and calls.
struct Side {
    id: String,
    number: &'static str,
    call: &'static str,
}

impl Fronts {
    async fn new(pool: PgPool) -> Self {
        let ops = Receiver::ok().await;
        let ok = Receiver::ok().await;
        let app = spawn_app_with(pool, |c| {
            c.operator_webhook_url = Some(ops.url("/ops"));
            c.operator_webhook_secret =
                Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned().into());
            // One retry, so a refused URL fails its delivery at once.
            c.retry_schedule = "100ms".parse().unwrap();
        })
        .await;
        let http = client();
        let r = sign_in(&app, &http, ADMIN).await;
        let (session, _) = set_cookie(r.headers(), "callhook_session").unwrap();
        let page = http
            .get(app.url("/console/scenarios/new?lang=en"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        let html = Html::parse_document(&page.text().await.unwrap());
        let csrf = attr(&html, "form#settings input[name=csrf]", "value");
        Self {
            app,
            http,
            session,
            csrf,
            ok,
            _ops: ops,
        }
    }

    /// Posts a console form (its CSRF token added); the status.
    async fn console(&self, path: &str, fields: &[(&str, &str)]) -> u16 {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        let r = self
            .http
            .post(self.app.url(path))
            .header("cookie", &self.session)
            .form(&form)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }

    /// A scenario made through the API (the set-up both sides share).
    async fn scenario(
        &self,
        number: &'static str,
        call: &'static str,
        during: &str,
        after: &str,
    ) -> Side {
        let s = self
            .app
            .create_scenario(
                json!({"name": "Twin", "numbers": [number], "timezone": "UTC",
                                    "during_call_url": during, "after_call_url": after}),
            )
            .await;
        Side {
            id: s["id"].as_str().unwrap().to_owned(),
            number,
            call,
        }
    }

    /// Pauses both of the side's endpoints (so its calls' webhooks wait).
    async fn pause_both(&self, side: &Side) {
        for kind in ["during_call", "after_call"] {
            let path = format!("/api/v1/scenarios/{}/endpoints/{kind}/pause", side.id);
            assert_eq!(self.app.admin_post(&path, &json!({})).await.0, 200);
        }
    }

    /// Reports the side's call (start, and end when `ended`).
    async fn call(&self, side: &Side, ended: bool) {
        let mut start = page_call(side.call);
        start["callee"] = json!(side.number);
        let (status, body) = self.app.ingest_post("/api/v1/calls", &start).await;
        assert_eq!(status, 202, "{body}");
        if ended {
            let (status, body) = self
                .app
                .ingest_post(
                    &format!("/api/v1/calls/{}/end", side.call),
                    &json!({"status": "ANSWER", "duration": 5}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
        }
    }
}

/// Waits until none of the side's call deliveries is due or in flight
/// (parked and blocked ones may stay: they wait for an operator).
async fn settled(pool: &PgPool, side: &Side) {
    eventually(WAIT, &format!("{}'s deliveries to settle", side.call), || async {
        let moving: i64 = sqlx::query_scalar(
            "select count(*) from deliveries where call_id = $1 and state = 'pending' and not parked and blocked_by is null",
        )
        .bind(side.call)
        .fetch_one(pool)
        .await
        .unwrap();
        (moving == 0).then_some(())
    })
    .await;
}

/// What an operation leaves in Postgres for a side, its own ids, number
/// and moments replaced by placeholders so twins compare equal.
async fn snapshot(pool: &PgPool, side: &Side) -> Value {
    let row = |sql: &'static str| async move {
        sqlx::query_scalar::<_, Option<Value>>(sql)
            .bind(side.id.parse::<uuid::Uuid>().unwrap())
            .bind(side.call)
            .fetch_optional(pool)
            .await
            .unwrap()
            .flatten()
            .unwrap_or(Value::Null)
    };
    let scenario = row(
        "select to_jsonb(s) - 'id' - 'signing_secret' - 'previous_signing_secret' - 'created_at' - 'updated_at'
              || jsonb_build_object('overlap', s.previous_secret_expires_at is not null)
              - 'previous_secret_expires_at'
           from scenarios s where id = $1 and $2::text is not null",
    )
    .await;
    let endpoints = row(
        "select jsonb_agg(jsonb_build_object('kind', kind, 'state', state, 'failures', consecutive_failures,
                                             'last_error', last_error, 'max_in_flight', max_in_flight,
                                             'max_per_second', max_per_second) order by kind)
           from endpoints where scenario_id = $1 and $2::text is not null",
    )
    .await;
    let deliveries = row(
        "select jsonb_agg(jsonb_build_object('kind', kind, 'state', state, 'parked', parked,
                                             'attempts', attempt_count, 'last_error', last_error,
                                             'requeued', requeued, 'scenario', scenario_id is not null)
                          order by kind)
           from deliveries where call_id = $2 and $1::uuid is not null",
    )
    .await;
    let operator_events = row(
        "select jsonb_agg(payload::jsonb->>'type' order by created_at, id)
           from deliveries where kind = 'operator_event' and position($1::text in payload) > 0
            and $2::text is not null",
    )
    .await;
    let tests = row(
        "select jsonb_agg(jsonb_build_object('status', response_status, 'error', error))
           from delivery_attempts where scenario_id = $1 and is_test and $2::text is not null",
    )
    .await;
    let audit = row(
        "select jsonb_agg(jsonb_build_object('action', action, 'actor', actor, 'details', details) order by id)
           from audit_log where scenario_id = $1 and $2::text is not null",
    )
    .await;
    let all = json!({"scenario": scenario, "endpoints": endpoints, "deliveries": deliveries,
                     "operator_events": operator_events, "test_attempts": tests, "audit": audit});
    normalise(all, side)
}

/// Replaces the side's own id, number and call, every other UUID and
/// every moment, so that only what the operation did remains.
fn normalise(v: Value, side: &Side) -> Value {
    match v {
        // Another UUID is whole before any replacing: a side's call id
        // (`c-1`) may stand inside one (`…840c-162d…`).
        Value::String(s) if s != side.id && uuid::Uuid::parse_str(&s).is_ok() => {
            Value::String("<uuid>".into())
        }
        Value::String(s) => {
            let s = s
                .replace(&side.id, "<scenario>")
                .replace(side.number, "<number>")
                .replace(side.call, "<call>");
            if uuid::Uuid::parse_str(&s).is_ok() {
                Value::String("<uuid>".into())
            } else if chrono::DateTime::parse_from_rfc3339(&s).is_ok() {
                Value::String("<time>".into())
            } else {
                Value::String(s)
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| normalise(x, side)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, x)| (k, normalise(x, side)))
                .collect(),
        ),
        other => other,
    }
}

/// Both sides' snapshots once settled, equal; the API side's.
async fn same(pool: &PgPool, api: &Side, console: &Side, what: &str) -> Value {
    settled(pool, api).await;
    settled(pool, console).await;
    let (a, c) = (snapshot(pool, api).await, snapshot(pool, console).await);
    assert_eq!(
        a, c,
        "{what}: the API (left) and the console (right) differ"
    );
    assert_ne!(a["audit"], Value::Null, "{what} is audited");
    a
}

/// The last audit record of a snapshot: (action, details).
fn last_audit(snap: &Value) -> (&str, &Value) {
    let last = snap["audit"].as_array().unwrap().last().unwrap();
    (last["action"].as_str().unwrap(), &last["details"])
}

/// The console form's fields for a scenario (as the API body below).
fn form<'a>(number: &'a str, during: &'a str, after: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("name", "Twin"),
        ("during_call_url", during),
        ("after_call_url", after),
        ("custom_fields", "source={marker}"),
        ("numbers", number),
        ("static_numbers", ""),
        ("timezone", "UTC"),
    ]
}

fn body(number: &str, during: &str, after: &str) -> Value {
    json!({"name": "Twin", "during_call_url": during, "after_call_url": after,
           "custom_fields": [{"name": "source", "value": "{marker}"}],
           "numbers": [number], "static_numbers": [], "timezone": "UTC"})
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn create_is_the_same_from_the_api_and_the_console(pool: PgPool) {
    let f = Fronts::new(pool.clone()).await;
    let url = f.ok.url("/hook");
    let (status, made) = f
        .app
        .admin_post("/api/v1/scenarios", &body("78005550001", &url, ""))
        .await;
    assert_eq!(status, 201, "{made}");
    let status = f
        .console("/console/scenarios/new", &form("78005550002", &url, ""))
        .await;
    assert_eq!(status, 303);
    let console_id: String =
        sqlx::query_scalar("select s.id::text from scenarios s join scenario_numbers n on n.scenario_id = s.id where n.number = '78005550002'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let api = Side {
        id: made["id"].as_str().unwrap().to_owned(),
        number: "78005550001",
        call: "a-1",
    };
    let console = Side {
        id: console_id,
        number: "78005550002",
        call: "c-1",
    };
    same(&pool, &api, &console, "create").await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn save_is_the_same_from_the_api_and_the_console(pool: PgPool) {
    let f = Fronts::new(pool.clone()).await;
    let ok = f.ok.url("/hook");
    let (api, console) = (
        f.scenario("78005550001", "a-1", REFUSED, &ok).await,
        f.scenario("78005550002", "c-1", REFUSED, &ok).await,
    );
    // Each: its endpoints paused, a call's two webhooks waiting (parked).
    for side in [&api, &console] {
        f.pause_both(side).await;
        f.call(side, true).await;
    }
    // The save moves the during-call URL (re-enabling the endpoint, its
    // delivery drains) and removes the after-call URL (its delivery cancelled).
    let (status, saved) = f
        .app
        .admin_put(
            &format!("/api/v1/scenarios/{}", api.id),
            &body(api.number, &ok, ""),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    let status = f
        .console(
            &format!("/console/scenarios/{}", console.id),
            &form(console.number, &ok, ""),
        )
        .await;
    assert_eq!(status, 303);
    let snap = same(&pool, &api, &console, "save").await;
    let states: Vec<_> = snap["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["kind"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("after_call", "cancelled"), ("during_call", "delivered")]
    );
    let (action, details) = last_audit(&snap);
    assert_eq!(action, "scenario.save");
    assert_eq!(details["cancelled"], 1, "{details}");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn delete_is_the_same_from_the_api_and_the_console(pool: PgPool) {
    let f = Fronts::new(pool.clone()).await;
    let (api, console) = (
        f.scenario("78005550001", "a-1", REFUSED, REFUSED).await,
        f.scenario("78005550002", "c-1", REFUSED, REFUSED).await,
    );
    for side in [&api, &console] {
        f.pause_both(side).await;
        f.call(side, true).await;
    }
    let (status, _) = f
        .app
        .admin_delete(&format!("/api/v1/scenarios/{}", api.id))
        .await;
    assert_eq!(status, 204);
    let status = f
        .console(
            &format!("/console/scenarios/{}/delete", console.id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(status, 303);
    let snap = same(&pool, &api, &console, "delete").await;
    assert_eq!(
        last_audit(&snap),
        ("scenario.delete", &json!({"cancelled": 2}))
    );
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn rotate_is_the_same_from_the_api_and_the_console(pool: PgPool) {
    let f = Fronts::new(pool.clone()).await;
    let ok = f.ok.url("/hook");
    let (api, console) = (
        f.scenario("78005550001", "a-1", &ok, "").await,
        f.scenario("78005550002", "c-1", &ok, "").await,
    );
    let path = format!("/api/v1/scenarios/{}/secret/rotate", api.id);
    assert_eq!(f.app.admin_post(&path, &json!({})).await.0, 200);
    let path = format!("/console/scenarios/{}/secret/rotate", console.id);
    assert_eq!(f.console(&path, &[]).await, 303);
    same(&pool, &api, &console, "rotate").await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn pause_and_enable_are_the_same_from_the_api_and_the_console(pool: PgPool) {
    let f = Fronts::new(pool.clone()).await;
    let ok = f.ok.url("/hook");
    let (api, console) = (
        f.scenario("78005550001", "a-1", &ok, &ok).await,
        f.scenario("78005550002", "c-1", &ok, &ok).await,
    );
    for action in ["pause", "enable"] {
        let path = format!("/api/v1/scenarios/{}/endpoints/after_call/{action}", api.id);
        assert_eq!(f.app.admin_post(&path, &json!({})).await.0, 200);
        let path = format!(
            "/console/scenarios/{}/endpoints/after_call/{action}",
            console.id
        );
        assert_eq!(f.console(&path, &[]).await, 303);
        same(&pool, &api, &console, action).await;
    }
    // A kind that is not an endpoint is refused the same way by both.
    let path = format!(
        "/api/v1/scenarios/{}/endpoints/operator_event/pause",
        api.id
    );
    assert_eq!(f.app.admin_post(&path, &json!({})).await.0, 422);
    let path = format!(
        "/console/scenarios/{}/endpoints/operator_event/pause",
        console.id
    );
    assert_eq!(f.console(&path, &[]).await, 422);
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn retry_and_recover_are_the_same_from_the_api_and_the_console(pool: PgPool) {
    let f = Fronts::new(pool.clone()).await;
    let (api, console) = (
        f.scenario("78005550001", "a-1", REFUSED, "").await,
        f.scenario("78005550002", "c-1", REFUSED, "").await,
    );
    for side in [&api, &console] {
        f.call(side, false).await;
    }
    // Both failed (two refused attempts), then each sent again once by hand.
    same(&pool, &api, &console, "the set-up").await;
    let failed = |side: &Side| {
        let pool = pool.clone();
        let call = side.call;
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "select id from deliveries where call_id = $1 and state = 'failed'",
            )
            .bind(call)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (a, c) = (failed(&api).await, failed(&console).await);
    assert_eq!(
        f.app
            .admin_post(&format!("/api/v1/deliveries/{a}/retry"), &json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        f.console(&format!("/console/deliveries/{c}/retry"), &[])
            .await,
        303
    );
    same(&pool, &api, &console, "retry").await;

    // Then the bulk recover of what failed since an hour ago.
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let path = format!(
        "/api/v1/deliveries/retry?scenario_id={}&state=failed&since={}",
        api.id,
        since.format("%Y-%m-%dT%H:%M:00Z")
    );
    let (status, n) = f.app.admin_post(&path, &json!({})).await;
    assert_eq!(
        (status.as_u16(), n["requeued"].as_u64()),
        (200, Some(1)),
        "{n}"
    );
    let since = since.format("%Y-%m-%dT%H:%M").to_string();
    let fields = [
        ("scenario_id", console.id.as_str()),
        ("since", &since),
        ("confirm", "yes"),
    ];
    assert_eq!(f.console("/console/recover", &fields).await, 200);
    let snap = same(&pool, &api, &console, "recover").await;
    assert_eq!(
        snap["deliveries"][0]["attempts"], 4,
        "two, one retry, one recover"
    );
    assert_eq!(snap["deliveries"][0]["requeued"], true);
    assert_eq!(last_audit(&snap).0, "deliveries.retry");
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn a_test_send_is_the_same_from_the_api_and_the_console(pool: PgPool) {
    let f = Fronts::new(pool.clone()).await;
    let ok = f.ok.url("/hook");
    let (api, console) = (
        f.scenario("78005550001", "a-1", &ok, "").await,
        f.scenario("78005550002", "c-1", &ok, "").await,
    );
    let path = format!("/api/v1/scenarios/{}/test", api.id);
    let (status, tested) = f
        .app
        .admin_post(&path, &json!({"kind": "during_call"}))
        .await;
    assert_eq!(
        (status.as_u16(), tested["status"].as_u64()),
        (200, Some(200)),
        "{tested}"
    );
    let path = format!("/console/scenarios/{}/test", console.id);
    assert_eq!(f.console(&path, &[("kind", "during_call")]).await, 200);
    same(&pool, &api, &console, "test send").await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn limits_are_the_same_from_the_api_and_the_console(pool: PgPool) {
    let f = Fronts::new(pool.clone()).await;
    let ok = f.ok.url("/hook");
    let (api, console) = (
        f.scenario("78005550001", "a-1", &ok, &ok).await,
        f.scenario("78005550002", "c-1", &ok, &ok).await,
    );
    let path = format!("/api/v1/scenarios/{}/endpoints/after_call/limits", api.id);
    let (status, set) = f
        .app
        .admin_put(&path, &json!({"max_in_flight": 4, "max_per_second": 2.5}))
        .await;
    assert_eq!(status, 200, "{set}");
    let path = format!(
        "/console/scenarios/{}/endpoints/after_call/limits",
        console.id
    );
    let fields = [("max_in_flight", "4"), ("max_per_second", "2.5")];
    assert_eq!(f.console(&path, &fields).await, 303);
    let snap = same(&pool, &api, &console, "limits").await;
    assert_eq!(snap["endpoints"][0]["max_in_flight"], 4, "{snap}");
    assert_eq!(snap["endpoints"][0]["max_per_second"], 2.5, "{snap}");

    // Out of range: refused by both, naming the field.
    let path = format!("/api/v1/scenarios/{}/endpoints/after_call/limits", api.id);
    let (status, refused) = f.app.admin_put(&path, &json!({"max_in_flight": 0})).await;
    assert_eq!(status, 422);
    assert_eq!(refused["error"]["field"], "max_in_flight");
    let path = format!(
        "/console/scenarios/{}/endpoints/after_call/limits",
        console.id
    );
    assert_eq!(f.console(&path, &[("max_in_flight", "0")]).await, 422);
    // Empty fields: back to none of its own, on the API's side too.
    assert_eq!(f.console(&path, &[]).await, 303);
    let path = format!("/api/v1/scenarios/{}/endpoints/after_call/limits", api.id);
    assert_eq!(f.app.admin_put(&path, &json!({})).await.0, 200);
    same(&pool, &api, &console, "limits cleared").await;
}

#[sqlx::test(migrator = "callhook_store::MIGRATOR")]
async fn send_now_is_the_same_from_the_api_and_the_console(pool: PgPool) {
    let f = Fronts::new(pool.clone()).await;
    let (api, console) = (
        f.scenario("78005550001", "a-1", REFUSED, "").await,
        f.scenario("78005550002", "c-1", REFUSED, "").await,
    );
    let path = format!(
        "/api/v1/scenarios/{}/endpoints/during_call/send-now",
        api.id
    );
    let (status, sent) = f.app.admin_post(&path, &json!({})).await;
    assert_eq!(
        (status.as_u16(), sent["deliveries"].as_u64()),
        (200, Some(0)),
        "{sent}"
    );
    let path = format!(
        "/console/scenarios/{}/endpoints/during_call/send-now",
        console.id
    );
    assert_eq!(f.console(&path, &[]).await, 303);
    let snap = same(&pool, &api, &console, "send now").await;
    assert_eq!(
        last_audit(&snap),
        (
            "endpoint.send_now",
            &json!({"kind": "during_call", "deliveries": 0})
        )
    );
}
