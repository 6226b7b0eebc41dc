//! The driver: the scenario it makes and the calls it sends (one by one or
//! in batches); `measure` weighs them against their arrivals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt as _};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::measure::Measured;
use crate::pg;
use crate::receiver::{self, Arrivals};
use crate::stats::rate;
use crate::{BurstArgs, Common, SteadyArgs};

/// One call as the bench sent it.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) id: String,
    pub(crate) sent: Instant,
    /// When the server acknowledged it with a 2xx; `None` if it did not.
    pub(crate) acked: Option<Instant>,
}

pub(crate) struct Bench {
    pub(crate) http: reqwest::Client,
    pub(crate) server: String,
    pub(crate) admin_auth: String,
    pub(crate) ingest_auth: String,
    pub(crate) arrivals: Arc<Arrivals>,
    pub(crate) receiver: std::net::SocketAddr,
    pub(crate) run: String,
    pub(crate) callee: String,
    pub(crate) scenario_id: Uuid,
    pub(crate) concurrency: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) first_error: Mutex<Option<String>>,
}

impl Bench {
    /// Starts the receiver and creates the run's scenario (a fresh callee number
    /// per run, so runs never collide), then checks one webhook gets through.
    ///
    /// Stays whole: the set-up steps in order, each with its own error message.
    pub(crate) async fn connect(c: &Common) -> anyhow::Result<Self> {
        let admin = c.admin_token.as_deref().context(
            "the admin token is missing: pass --admin-token or set CALLHOOK_ADMIN_TOKEN",
        )?;
        let ingest = c.ingest_token.as_deref().context(
            "the ingest token is missing: pass --ingest-token or set CALLHOOK_INGEST_TOKEN",
        )?;
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::from(c.concurrency) * 2)
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        let server = c.server.trim_end_matches('/').to_owned();
        http.get(format!("{server}/healthz"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| {
                format!("is callhook running at {server}? (`make run`, or `callhook serve`)")
            })?;

        let (receiver, arrivals) = receiver::start().await?;
        let nonce = Uuid::new_v4().as_u128();
        let run = format!("{:08x}", nonce as u32);
        // 13 digits: "7" and 12 random ones.
        let callee = format!("7{:012}", (nonce >> 32) % 1_000_000_000_000);
        let admin_auth = format!("Bearer {admin}");
        let created = http
            .post(format!("{server}/api/v1/scenarios"))
            .header("authorization", &admin_auth)
            .header("content-type", "application/json")
            .body(
                json!({
                    "name": format!("callhook-bench {run}"),
                    "numbers": [callee],
                    "during_call_url": format!("http://{receiver}/hook"),
                })
                .to_string(),
            )
            .send()
            .await
            .context("creating the bench's scenario")?;
        let status = created.status();
        let body = created
            .text()
            .await
            .context("reading the scenario answer")?;
        if !status.is_success() {
            bail!("creating the bench's scenario: {status}: {body}");
        }
        let scenario: Value =
            serde_json::from_str(&body).context("the scenario answer is not JSON")?;
        let scenario_id = scenario["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no id in the scenario answer: {body}"))?;
        let bench = Self {
            http,
            server,
            admin_auth,
            ingest_auth: format!("Bearer {ingest}"),
            arrivals,
            receiver,
            run,
            callee,
            scenario_id,
            concurrency: usize::from(c.concurrency),
            idle_timeout: c.idle_timeout,
            max_wait: c.max_wait,
            first_error: Mutex::new(None),
        };
        eprintln!(
            "run {}: scenario {} (callee {}), receiver http://{}",
            bench.run, bench.scenario_id, bench.callee, bench.receiver
        );
        bench
            .check_one_gets_through(c.database_url.as_deref())
            .await?;
        Ok(bench)
    }

    pub(crate) async fn check_one_gets_through(
        &self,
        database_url: Option<&str>,
    ) -> anyhow::Result<()> {
        let id = format!("bench-{}-check", self.run);
        let sent = self.send_one(id.clone()).await;
        if sent.acked.is_none() {
            bail!(
                "the server refused a start event: {}",
                self.take_error().unwrap_or_default()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.arrivals.count_arrived(std::iter::once(id.as_str())) == 1 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen = match database_url {
            Some(url) => match pg::delivery_outcome(url, &id).await {
                Ok(Some(o)) => format!(" The delivery in the database: {o}."),
                Ok(None) => " The database holds no delivery for it.".to_owned(),
                Err(e) => format!(" (Reading its delivery failed: {e:#}.)"),
            },
            None => String::new(),
        };
        bail!(
            "the first webhook did not reach the bench's receiver within 10 s. Is the server running with \
             CALLHOOK_ALLOW_PRIVATE_DESTINATIONS=true (the receiver is on 127.0.0.1)?{seen}"
        )
    }

    pub(crate) async fn delete_scenario(&self) -> anyhow::Result<()> {
        self.http
            .delete(format!(
                "{}/api/v1/scenarios/{}",
                self.server, self.scenario_id
            ))
            .header("authorization", &self.admin_auth)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// N calls from C connections (or C concurrent batch requests).
    pub(crate) async fn burst(&self, phase: &str, a: &BurstArgs) -> anyhow::Result<Measured> {
        let n = a.calls as usize;
        let ids: Vec<String> = (0..n)
            .map(|i| format!("bench-{}-{phase}-{i}", self.run))
            .collect();
        let unit = if a.batch {
            usize::from(a.batch_size)
        } else {
            1
        };
        let chunks: Vec<Vec<String>> = ids.chunks(unit).map(<[String]>::to_vec).collect();
        let next = &AtomicUsize::new(0);
        let chunks = &chunks;
        eprintln!(
            "{phase}: {n} calls, {} connections{}…",
            self.concurrency,
            if a.batch {
                format!(", batches of {unit}")
            } else {
                String::new()
            }
        );
        let worker = move || async move {
            let mut mine = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(chunk) = chunks.get(k) else {
                    return anyhow::Ok(mine);
                };
                if a.batch {
                    mine.extend(self.send_batch(chunk.clone()).await?);
                } else {
                    mine.push(self.send_one(chunk[0].clone()).await);
                }
            }
        };
        let results = join_all((0..self.concurrency).map(|_| worker())).await;
        let mut sent = Vec::with_capacity(n);
        for r in results {
            sent.extend(r?);
        }
        self.measure(sent).await
    }

    /// R calls/s for T, each its own request, paced by a tokio interval.
    pub(crate) async fn steady(&self, a: &SteadyArgs) -> anyhow::Result<Measured> {
        let total = (f64::from(a.rate) * a.duration.as_secs_f64()).round() as usize;
        eprintln!(
            "steady: {} calls/s for {:?} ({total} calls)…",
            a.rate, a.duration
        );
        let sent = self
            .paced(a.rate, total, |i| format!("bench-{}-steady-{i}", self.run))
            .await;
        self.measure(sent).await
    }

    /// `total` calls at `rate` a second, each its own request, named by
    /// `id`; the requests run concurrently with the pacing, on this task.
    pub(crate) async fn paced(
        &self,
        rate: u32,
        total: usize,
        id: impl Fn(usize) -> String,
    ) -> Vec<Sent> {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        let mut in_flight = FuturesUnordered::new();
        let mut sent = Vec::with_capacity(total);
        let mut i = 0;
        while i < total {
            tokio::select! {
                _ = tick.tick() => {
                    in_flight.push(self.send_one(id(i)));
                    i += 1;
                }
                Some(s) = in_flight.next(), if !in_flight.is_empty() => sent.push(s),
            }
        }
        while let Some(s) = in_flight.next().await {
            sent.push(s);
        }
        sent
    }

    /// The receiver's own request rate: C connections of the bench's client
    /// posting a webhook-sized body straight to it for `time`.
    pub(crate) async fn receiver_limit(&self, time: Duration) -> anyhow::Result<f64> {
        let url = format!("http://{}/hook", self.receiver);
        let body = bytes::Bytes::from(
            json!({"id": format!("bench-{}-probe", self.run), "pad": "x".repeat(600)}).to_string(),
        );
        let (url, body) = (&url, &body);
        let started = Instant::now();
        let deadline = started + time;
        let worker = move || async move {
            let mut n = 0usize;
            while Instant::now() < deadline {
                self.http
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .context("posting to the bench's own receiver")?
                    .bytes()
                    .await?;
                n += 1;
            }
            anyhow::Ok(n)
        };
        let mut total = 0;
        for r in join_all((0..self.concurrency).map(|_| worker())).await {
            total += r?;
        }
        Ok(rate(total, started.elapsed()))
    }
}
