//! Test harness: the real server on a random port against a fresh database,
//! real HTTP receivers on 127.0.0.1, and waits with deadlines.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use callhook::ServeConfig;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub(crate) const ADMIN: &str = "test-admin-token";
pub(crate) const INGEST: &str = "test-ingest-token";

/// Logs only when `TEST_LOG` is set.
pub(crate) fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    std::env::var("TEST_LOG").unwrap_or_else(|_| "debug".into()),
                ))
                .with_test_writer()
                .try_init();
        }
    });
}

pub(crate) struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings for tests: fast retries, loopback receivers allowed, short timeouts.
pub(crate) fn test_config() -> ServeConfig {
    let mut c = ServeConfig::for_tests(ADMIN, INGEST);
    c.retry_schedule = "1s,1s,1s".parse().unwrap();
    c.allow_private_destinations = true;
    c.request_timeout = Duration::from_secs(2);
    c.connect_timeout = Duration::from_secs(1);
    c.lease = Duration::from_secs(5);
    c.poll_interval = Duration::from_millis(200);
    c.shutdown_grace = Duration::from_secs(3);
    c.gauge_interval = Duration::from_millis(50);
    // Ended calls' during-call webhooks do not expire under a test's load
    // unless it says so (`ordering.rs` tests the expiry).
    c.during_call_grace = Duration::from_secs(3600);
    c
}

/// Starts the app (API and dispatcher) with [`test_config`].
pub(crate) async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, |_| {}).await
}

/// Starts the app with [`test_config`] changed by `adjust`.
pub(crate) async fn spawn_app_with(pool: PgPool, adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    init_logs();
    let mut config = test_config();
    adjust(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(callhook::run(config, listener, pool, shutdown.clone()));
    TestApp {
        addr,
        http: reqwest::Client::new(),
        shutdown,
        task: Some(task),
    }
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request reaches the app");
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let bytes = resp.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub(crate) async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, Some(ADMIN), None)
            .await
    }

    pub(crate) async fn admin_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(ADMIN), Some(body))
            .await
    }

    pub(crate) async fn admin_put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, path, Some(ADMIN), Some(body))
            .await
    }

    pub(crate) async fn admin_delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, Some(ADMIN), None)
            .await
    }

    pub(crate) async fn ingest_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(INGEST), Some(body))
            .await
    }

    pub(crate) async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        self.send(method, path, token, body).await
    }

    /// Posts a batch of starts and expects every one stored (`202`).
    pub(crate) async fn store_batch(&self, body: &Value) {
        let (status, answer) = self.ingest_post("/api/v1/calls/batch", body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(
            answer["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == 202),
            "{answer}"
        );
    }

    /// The Prometheus page at `/metrics` (expecting `200`).
    pub(crate) async fn metrics(&self) -> String {
        let resp = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    /// Creates a scenario; panics unless the API says 201.
    pub(crate) async fn create_scenario(&self, body: Value) -> Value {
        let (status, v) = self.admin_post("/api/v1/scenarios", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v
    }

    /// Stops the app gracefully and waits for it.
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `deadline`.
pub(crate) async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        // Not a wait for the system: the poll interval of a check that reads state.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
}

/// How a receiver answers one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Status(u16),
    /// Answer after this long (longer than the client's timeout = a hang).
    Slow(Duration, u16),
    /// 429/503 with `Retry-After: secs`.
    RetryAfter(u16, u64),
}

/// A webhook receiver on 127.0.0.1 that forwards every request into a
/// channel and answers from a script (then with the default).
pub(crate) struct Receiver {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Received>,
    default: Arc<Mutex<Reply>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
struct ReceiverState {
    tx: mpsc::UnboundedSender<Received>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
}

impl Receiver {
    /// Answers 200 to everything.
    pub(crate) async fn ok() -> Self {
        Self::scripted(vec![], Reply::Status(200)).await
    }

    pub(crate) async fn scripted(script: Vec<Reply>, default: Reply) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let default = Arc::new(Mutex::new(default));
        let state = ReceiverState {
            tx,
            script: Arc::new(Mutex::new(script.into())),
            default: default.clone(),
        };
        let app = axum::Router::new().fallback(receive).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            rx,
            default,
            _shutdown: stop_tx,
        }
    }

    /// From now on, answer every request (after the script) like this.
    pub(crate) fn answer(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next request, or a panic after `deadline`.
    pub(crate) async fn next(&mut self, deadline: Duration) -> Received {
        tokio::time::timeout(deadline, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no webhook arrived within {deadline:?}"))
            .expect("receiver running")
    }

    /// Requests that arrived so far, without waiting.
    pub(crate) fn drain(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            out.push(r);
        }
        out
    }
}

async fn receive(
    axum::extract::State(state): axum::extract::State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| state.default.lock().unwrap().clone());
    let _ = state.tx.send(Received {
        path: uri.path().to_owned(),
        headers,
        body,
        at: Instant::now(),
    });
    match reply {
        Reply::Status(s) => (StatusCode::from_u16(s).unwrap(), "ok").into_response(),
        Reply::Slow(d, s) => {
            // Not a wait: the receiver's own behaviour (a slow answer).
            tokio::time::sleep(d).await;
            (StatusCode::from_u16(s).unwrap(), "slow").into_response()
        }
        Reply::RetryAfter(s, secs) => (
            StatusCode::from_u16(s).unwrap(),
            [("retry-after", secs.to_string())],
            "later",
        )
            .into_response(),
    }
}

/// A delivery row as the tests read it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    pub id: uuid::Uuid,
    pub call_id: String,
    pub kind: String,
    pub payload: String,
    pub state: String,
    pub attempt_count: i32,
    pub last_error: Option<String>,
}

pub(crate) async fn deliveries(pool: &PgPool) -> Vec<DeliveryRow> {
    sqlx::query_as("select id, call_id, kind, payload, state, attempt_count, last_error from deliveries order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// An attempt row as the tests read it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub attempt: i32,
    pub url: String,
    pub response_status: Option<i32>,
    pub error: Option<String>,
}

pub(crate) async fn attempts(pool: &PgPool, delivery_id: uuid::Uuid) -> Vec<AttemptRow> {
    sqlx::query_as(
        "select attempt, url, response_status, error from delivery_attempts where delivery_id = $1 order by attempt",
    )
    .bind(delivery_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Waits until the delivery reaches `state`.
pub(crate) async fn wait_state(pool: &PgPool, id: uuid::Uuid, state: &str, deadline: Duration) {
    eventually(
        deadline,
        &format!("delivery {id} to be {state}"),
        || async {
            let s: String = sqlx::query_scalar("select state from deliveries where id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap();
            (s == state).then_some(())
        },
    )
    .await
}

/// The page's example call start.
/// A sample's value in a Prometheus text page (0 when absent).
pub(crate) fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name_and_labels).then(|| v.parse().unwrap())
        })
        .unwrap_or(0.0)
}

pub(crate) fn page_call(id: &str) -> Value {
    serde_json::json!({
        "id": id,
        "caller": "79990009911",
        "callee": "78005552233",
        "date": "2019-02-19 00:00:00",
        "visit_id": "123456",
        "marker": "vk_new",
        "order_id": 123456789,
        "google_client_id": "111111111.1111111111",
        "landing_page": "test.com/new",
        "domain": "test.com",
        "city": "Москва",
        "country": "Россия",
        "ip": "100.100.1.1",
        "first_visit": "1001",
        "referrer": "vk.com",
        "source_level_1": "vk",
        "source_level_2": "new"
    })
}

/// Reports the page's example call as `id` (expecting `202`) and returns its
/// during-call delivery's id.
pub(crate) async fn start_call(app: &TestApp, id: &str) -> uuid::Uuid {
    let (status, body) = app.ingest_post("/api/v1/calls", &page_call(id)).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    body["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The Standard Webhooks signature of `got` under the `whsec_…` secret,
/// written here from the spec rather than taken from the code under test:
/// `v1,` and the base64 HMAC-SHA256 of "{id}.{timestamp}.{body}" keyed with
/// the base64-decoded part of the secret.
pub(crate) fn signature_with(secret: &str, got: &Received) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            got.header("webhook-id"),
            got.header("webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(&got.body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether a request carries a signature made with the `whsec_…` secret
/// (among the space-separated ones of `webhook-signature`).
pub(crate) fn signed_with(got: &Received, secret: &str) -> bool {
    let expected = signature_with(secret, got);
    got.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// The support ticket's starting point: a CRM whose receiver answers 500,
/// a scenario sending both webhooks to it on a `5m,30m,2h` schedule, and
/// calls `ids` started and ended; each during-call webhook has failed once
/// and waits five minutes (read from Postgres), each after-call one waits
/// behind it.
pub(crate) struct Ticket {
    pub rx: Receiver,
    pub app: TestApp,
    pub scenario: String,
}

/// Reports call `id` to the ticket's CRM number, started and ended.
pub(crate) async fn start_and_end(app: &TestApp, id: &str) {
    let mut call = page_call(id);
    call["callee"] = serde_json::json!("78005552233");
    let (status, body) = app.ingest_post("/api/v1/calls", &call).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    end_call(app, id).await;
}

/// Ends call `id` as answered, 42 s (expecting `202`).
pub(crate) async fn end_call(app: &TestApp, id: &str) {
    let (status, body) = app
        .ingest_post(
            &format!("/api/v1/calls/{id}/end"),
            &serde_json::json!({"status": "ANSWER", "duration": 42}),
        )
        .await;
    assert_eq!(status.as_u16(), 202, "{body}");
}

pub(crate) async fn failing_crm(pool: &PgPool, ids: &[&str]) -> Ticket {
    let wait = Duration::from_secs(20);
    let mut rx = Receiver::scripted(vec![], Reply::Status(500)).await;
    let app = spawn_app_with(pool.clone(), |c| {
        c.retry_schedule = "5m,30m,2h".parse().unwrap();
        c.drain_rate = 1000;
        // The calls have ended: their during-call webhooks must not expire
        // while the ticket is worked (`ordering.rs` tests the expiry).
        c.during_call_grace = Duration::from_secs(3600);
    })
    .await;
    let s = app
        .create_scenario(serde_json::json!({
            "name": "CRM",
            "numbers": ["78005552233"],
            "during_call_url": rx.url("/crm/during"),
            "after_call_url": rx.url("/crm/after"),
        }))
        .await;
    for id in ids {
        start_and_end(&app, id).await;
    }
    for _ in ids {
        assert_eq!(rx.next(wait).await.path, "/crm/during");
    }
    during_calls_waiting_a_retry(pool, ids.len()).await;
    Ticket {
        rx,
        app,
        scenario: s["id"].as_str().unwrap().to_owned(),
    }
}

/// Receives `2 × ids` webhooks and checks that each call's during-call one
/// came before its after-call one.
pub(crate) async fn each_call_during_first(rx: &mut Receiver, ids: &[&str]) {
    let mut order = Vec::new();
    for _ in 0..ids.len() * 2 {
        let got = rx.next(Duration::from_secs(20)).await;
        order.push((got.json()["id"].as_str().unwrap().to_owned(), got.path));
    }
    for id in ids {
        let at = |path: &str| {
            order
                .iter()
                .position(|(i, p)| i == id && p == path)
                .unwrap_or_else(|| panic!("{id} at {path}: {order:?}"))
        };
        assert!(at("/crm/during") < at("/crm/after"), "{id}: {order:?}");
    }
}

/// Waits until `n` during-call deliveries have failed an attempt and wait
/// for a retry more than a minute away (not leased): a state read from
/// Postgres.
pub(crate) async fn during_calls_waiting_a_retry(pool: &PgPool, n: usize) {
    let n = n as i64;
    eventually(
        Duration::from_secs(20),
        "the during-call webhooks waiting for their retry",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "select count(*) from deliveries
                  where kind = 'during_call' and state = 'pending' and lease_token is null
                    and next_attempt_at > now() + interval '1 minute'",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            (waiting == n).then_some(())
        },
    )
    .await;
}
