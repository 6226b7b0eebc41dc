//! `callhook-bench`: the project's end-to-end bench. It drives a RUNNING
//! callhook server over HTTP like the telephony side would, receives the
//! webhooks on its own loopback receiver, and measures ingest → arrival:
//! `burst` (N calls as fast as C connections allow), `steady` (R calls/s for T
//! seconds, latency percentiles) and `backlog` (a burst over a million pending
//! deliveries, against an empty-table burst). It reads the server's CPU time
//! and memory from `/proc`, and measures the machine's own limits: its
//! receiver under a plain load generator, and Postgres's commit rate for the
//! two transactions each delivery costs.
//!
//! It needs the server started with `CALLHOOK_ALLOW_PRIVATE_DESTINATIONS=true`
//! (the receiver is on 127.0.0.1) and the admin and ingest tokens. It touches
//! the server's database only with `--database-url`: the backlog preload and
//! the commit-rate probe. It is not a test and not part of `make test`.

mod pg;
mod procfs;
mod receiver;
mod report;
mod stats;
mod watch;

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt as _};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::receiver::Arrivals;
use crate::report::{print_phase, Report};
use crate::stats::{percentiles, rate, Percentiles};
use crate::watch::{PgWatch, ServerProc};

/// End-to-end bench of a running callhook server.
#[derive(Debug, Parser)]
#[command(name = "callhook-bench", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Args)]
struct Common {
    /// Base URL of the running server.
    #[arg(
        long,
        env = "CALLHOOK_BENCH_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// The server's admin token (creates the bench's scenario).
    #[arg(
        long,
        env = "CALLHOOK_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    admin_token: Option<String>,
    /// The server's ingest token.
    #[arg(
        long,
        env = "CALLHOOK_INGEST_TOKEN",
        hide_env_values = true,
        global = true
    )]
    ingest_token: Option<String>,
    /// The server's database: needed by `backlog` (preload) and the Postgres
    /// commit-rate probe (skipped without it).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// The server's pid, for CPU and RSS; default: the process listening on
    /// the server's port (found through /proc/net/tcp and /proc/*/fd).
    #[arg(long, env = "CALLHOOK_BENCH_SERVER_PID", global = true)]
    server_pid: Option<u32>,
    /// Concurrent keep-alive connections (ingest, and the limit probes).
    #[arg(short = 'c', long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..), global = true)]
    concurrency: u16,
    /// After sending, stop waiting for webhooks when none came for this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    idle_timeout: Duration,
    /// After sending, wait for webhooks at most this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration, global = true)]
    max_wait: Duration,
    /// How long each machine-limit probe runs.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, global = true)]
    probe_time: Duration,
    /// Skip the machine-limit probes (receiver rate, Postgres commit rate).
    #[arg(long, global = true)]
    no_limits: bool,
    /// Keep the bench's scenario (and `backlog`'s preloaded rows) afterwards.
    #[arg(long, global = true)]
    keep: bool,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// N start events as fast as C connections go; ingest rate, deliveries/s, lost, duplicates.
    Burst(BurstArgs),
    /// R calls/s for T; ingest-acknowledged → arrival percentiles.
    Steady(SteadyArgs),
    /// An empty-table burst, then ROWS pending deliveries preloaded (due in a
    /// day, or with --parked parked behind a paused endpoint of another
    /// scenario), then the same burst again; the ratio of the two.
    Backlog(BacklogArgs),
}

#[derive(Debug, Clone, Args)]
struct BurstArgs {
    /// Calls to send.
    #[arg(short = 'n', long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    calls: u32,
    /// Use `POST /api/v1/calls/batch` (`{"calls": [...]}`) instead of one request per call.
    #[arg(long)]
    batch: bool,
    /// Calls per batch request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch_size: u16,
}

#[derive(Debug, Args)]
struct SteadyArgs {
    /// Calls per second.
    #[arg(short = 'r', long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate: u32,
    /// How long to send.
    #[arg(short = 't', long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[derive(Debug, Args)]
struct BacklogArgs {
    #[command(flatten)]
    burst: BurstArgs,
    /// Pending deliveries to preload.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1..))]
    rows: i64,
    /// Preload the rows as a dead receiver's backlog instead: another
    /// scenario whose endpoints are paused, its deliveries parked.
    #[arg(long)]
    parked: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callhook-bench: error: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Errors are printed as their chain of causes, without a backtrace: they
    // say what to fix (a missing token, a server that is not running...).
    match runtime.block_on(bench(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callhook-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(cli: &Cli) -> anyhow::Result<()> {
    let bench = Bench::connect(&cli.common).await?;
    let result = run(cli, &bench).await;
    if !cli.common.keep {
        if let Err(e) = bench.delete_scenario().await {
            eprintln!(
                "warning: could not delete the bench's scenario {}: {e:#}",
                bench.scenario_id
            );
        }
    }
    result
}

async fn run(cli: &Cli, bench: &Bench) -> anyhow::Result<()> {
    let c = &cli.common;
    let mut report = Report::new(&cli.mode, c);
    let server = ServerProc::find(c);
    match &cli.mode {
        Mode::Burst(a) => {
            let pg = PgWatch::start(c.database_url.as_deref(), server.ticks).await;
            let watch = server.watch();
            let m = bench.burst("burst", a).await?;
            report.server = watch.finish().await;
            report.postgres = match pg {
                Some(w) => w.finish().await,
                None => None,
            };
            report.main = Some(m);
        }
        Mode::Steady(a) => {
            let pg = PgWatch::start(c.database_url.as_deref(), server.ticks).await;
            let watch = server.watch();
            let m = bench.steady(a).await?;
            report.server = watch.finish().await;
            report.postgres = match pg {
                Some(w) => w.finish().await,
                None => None,
            };
            report.main = Some(m);
        }
        Mode::Backlog(a) => {
            let url = c
                .database_url
                .as_deref()
                .context("backlog preloads through SQL: pass --database-url (or DATABASE_URL), the server's database")?;
            let pool = pg::connect(url, 2).await?;
            let claims = pg::ClaimStats::new(&pool).await;
            claims.reset(&pool).await;
            let empty = bench.burst("empty", &a.burst).await?;
            print_phase("empty-table burst", &empty);
            report.claims_empty = claims.read(&pool).await;
            let prefix = format!("bench-{}-preload-", bench.run);
            let t = Instant::now();
            let dead = if a.parked {
                eprintln!(
                    "preloading {} deliveries parked behind a paused endpoint…",
                    a.rows
                );
                Some(pg::preload_parked(&pool, &bench.run, &prefix, a.rows).await?)
            } else {
                eprintln!("preloading {} pending deliveries (due in a day)…", a.rows);
                pg::preload(&pool, bench.scenario_id, &bench.callee, &prefix, a.rows).await?;
                None
            };
            eprintln!("preloaded in {:.1} s", t.elapsed().as_secs_f64());
            claims.reset(&pool).await;
            let pg = PgWatch::start(Some(url), server.ticks).await;
            let watch = server.watch();
            let loaded = bench.burst("backlog", &a.burst).await;
            report.server = watch.finish().await;
            report.postgres = match pg {
                Some(w) => w.finish().await,
                None => None,
            };
            report.claims = claims.read(&pool).await;
            if c.keep {
                eprintln!("kept the preload: call ids start with {prefix}");
            } else {
                eprintln!("deleting the preload…");
                let n = pg::delete_preload(&pool, &prefix).await?;
                if let Some(dead) = dead {
                    pg::delete_scenario(&pool, dead).await?;
                }
                eprintln!("deleted {n} preloaded calls");
            }
            report.main = Some(loaded?);
            report.empty = Some(empty);
            report.backlog_rows = Some(a.rows);
        }
    }
    if !c.no_limits {
        eprintln!("measuring the machine's limits ({:?} each)…", c.probe_time);
        report.receiver_per_s = Some(bench.receiver_limit(c.probe_time).await?);
        if let Some(url) = &c.database_url {
            report.pg = Some(
                pg::commit_rates(url, usize::from(c.concurrency), c.probe_time, &bench.run).await?,
            );
        }
    }
    report.print();
    Ok(())
}

/// What one sending phase measured.
#[derive(Debug, Clone)]
struct Measured {
    calls: usize,
    acked: usize,
    ingest_errors: usize,
    ingest_per_s: f64,
    deliveries_per_s: f64,
    lost: usize,
    duplicates: u64,
    /// Ingest acknowledged → first arrival at the receiver.
    latency: Option<Percentiles>,
    /// Ingest request sent → first arrival (never negative, unlike the above).
    send_latency: Option<Percentiles>,
    /// Webhooks that arrived before their call's acknowledgement did.
    before_ack: usize,
}

/// One call as the bench sent it.
#[derive(Debug, Clone)]
struct Sent {
    id: String,
    sent: Instant,
    /// When the server acknowledged it with a 2xx; `None` if it did not.
    acked: Option<Instant>,
}

struct Bench {
    http: reqwest::Client,
    server: String,
    admin_auth: String,
    ingest_auth: String,
    arrivals: Arc<Arrivals>,
    receiver: std::net::SocketAddr,
    run: String,
    callee: String,
    scenario_id: Uuid,
    concurrency: usize,
    idle_timeout: Duration,
    max_wait: Duration,
    first_error: Mutex<Option<String>>,
}

impl Bench {
    /// Starts the receiver and creates the run's scenario (a fresh callee number
    /// per run, so runs never collide), then checks one webhook gets through.
    async fn connect(c: &Common) -> anyhow::Result<Self> {
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

    async fn check_one_gets_through(&self, database_url: Option<&str>) -> anyhow::Result<()> {
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

    async fn delete_scenario(&self) -> anyhow::Result<()> {
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

    fn start_body(&self, id: &str) -> Value {
        json!({"id": id, "caller": "79990000000", "callee": self.callee})
    }

    fn note_error(&self, e: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(e);
    }

    fn take_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// `POST /api/v1/calls` with one start event.
    async fn send_one(&self, id: String) -> Sent {
        let body = self.start_body(&id).to_string();
        let sent = Instant::now();
        let res = self
            .http
            .post(format!("{}/api/v1/calls", self.server))
            .header("authorization", &self.ingest_auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let acked = match res {
            Ok(r) if r.status().is_success() => {
                // Read the answer: the acknowledgement is the whole response.
                match r.bytes().await {
                    Ok(_) => Some(Instant::now()),
                    Err(e) => {
                        self.note_error(format!("reading the answer: {e}"));
                        None
                    }
                }
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                self.note_error(format!("{status}: {text}"));
                None
            }
            Err(e) => {
                self.note_error(format!("{e:#}"));
                None
            }
        };
        Sent { id, sent, acked }
    }

    /// `POST /api/v1/calls/batch` with these start events; an error when the
    /// server has no such endpoint (404), so the run stops there.
    async fn send_batch(&self, ids: Vec<String>) -> anyhow::Result<Vec<Sent>> {
        let calls: Vec<Value> = ids.iter().map(|id| self.start_body(id)).collect();
        let body = json!({ "calls": calls }).to_string();
        let sent = Instant::now();
        let res = self
            .http
            .post(format!("{}/api/v1/calls/batch", self.server))
            .header("authorization", &self.ingest_auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let failed_all = |e: String| -> Vec<Sent> {
            self.note_error(e);
            ids.iter()
                .map(|id| Sent {
                    id: id.clone(),
                    sent,
                    acked: None,
                })
                .collect()
        };
        let r = match res {
            Ok(r) => r,
            Err(e) => return Ok(failed_all(format!("{e:#}"))),
        };
        let status = r.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            bail!(
                "this server has no batch ingest endpoint (POST /api/v1/calls/batch answered 404); \
                 run without --batch, or against a build that has it"
            );
        }
        let text = match r.text().await {
            Ok(t) => t,
            Err(e) => return Ok(failed_all(format!("reading the batch answer: {e}"))),
        };
        let acked_at = Instant::now();
        if !status.is_success() {
            return Ok(failed_all(format!("batch: {status}: {text}")));
        }
        let items = item_failures(&text, ids.len());
        Ok(ids
            .into_iter()
            .zip(items)
            .map(|(id, failure)| {
                let acked = match failure {
                    None => Some(acked_at),
                    Some(why) => {
                        self.note_error(format!("batch item {id}: {why}"));
                        None
                    }
                };
                Sent { id, sent, acked }
            })
            .collect())
    }

    /// N calls from C connections (or C concurrent batch requests).
    async fn burst(&self, phase: &str, a: &BurstArgs) -> anyhow::Result<Measured> {
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
    async fn steady(&self, a: &SteadyArgs) -> anyhow::Result<Measured> {
        let total = (f64::from(a.rate) * a.duration.as_secs_f64()).round() as usize;
        eprintln!(
            "steady: {} calls/s for {:?} ({total} calls)…",
            a.rate, a.duration
        );
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(a.rate)));
        // The requests run concurrently with the pacing, on this task.
        let mut in_flight = FuturesUnordered::new();
        let mut sent = Vec::with_capacity(total);
        let mut i = 0;
        while i < total {
            tokio::select! {
                _ = tick.tick() => {
                    in_flight.push(self.send_one(format!("bench-{}-steady-{i}", self.run)));
                    i += 1;
                }
                Some(s) = in_flight.next(), if !in_flight.is_empty() => sent.push(s),
            }
        }
        while let Some(s) = in_flight.next().await {
            sent.push(s);
        }
        self.measure(sent).await
    }

    /// Waits for the acknowledged calls' webhooks, then works out the figures.
    async fn measure(&self, sent: Vec<Sent>) -> anyhow::Result<Measured> {
        let calls = sent.len();
        let acked: Vec<&Sent> = sent.iter().filter(|s| s.acked.is_some()).collect();
        let ingest_errors = calls - acked.len();
        if let Some(e) = self.take_error() {
            eprintln!("warning: {ingest_errors} calls not acknowledged; the first error: {e}");
        }
        let first_send = sent
            .iter()
            .map(|s| s.sent)
            .min()
            .context("nothing was sent")?;
        let last_ack = acked.iter().filter_map(|s| s.acked).max();
        self.wait_for(&acked).await;

        let arrivals = self.arrivals.lookup(acked.iter().map(|s| s.id.as_str()));
        let mut latencies = Vec::with_capacity(acked.len());
        let mut send_latencies = Vec::with_capacity(acked.len());
        let mut before_ack = 0;
        let mut last_arrival = None::<Instant>;
        let mut arrived = 0;
        let mut duplicates = 0u64;
        for (s, a) in acked.iter().zip(&arrivals) {
            let Some(a) = a else { continue };
            arrived += 1;
            duplicates += u64::from(a.count - 1);
            last_arrival = Some(last_arrival.map_or(a.first, |l| l.max(a.first)));
            send_latencies.push(a.first.saturating_duration_since(s.sent));
            if let Some(ack) = s.acked {
                // The webhook may beat the acknowledgement back to the bench
                // (it is sent once the call is committed, while the answer is
                // still on its way): 0 then.
                before_ack += usize::from(a.first < ack);
                latencies.push(a.first.saturating_duration_since(ack));
            }
        }
        Ok(Measured {
            calls,
            acked: acked.len(),
            ingest_errors,
            ingest_per_s: last_ack.map_or(0.0, |l| rate(acked.len(), l - first_send)),
            deliveries_per_s: last_arrival.map_or(0.0, |l| rate(acked.len(), l - first_send)),
            lost: acked.len() - arrived,
            duplicates,
            latency: percentiles(&mut latencies),
            send_latency: percentiles(&mut send_latencies),
            before_ack,
        })
    }

    /// Until every acknowledged call arrived, or none arrived for
    /// `idle_timeout`, or `max_wait` passed.
    async fn wait_for(&self, acked: &[&Sent]) {
        let start = Instant::now();
        let mut seen_total = self.arrivals.total();
        let mut progress = Instant::now();
        let mut checked_total = u64::MAX;
        loop {
            let total = self.arrivals.total();
            if total != seen_total {
                seen_total = total;
                progress = Instant::now();
            }
            if total != checked_total {
                checked_total = total;
                let arrived = self
                    .arrivals
                    .count_arrived(acked.iter().map(|s| s.id.as_str()));
                if arrived >= acked.len() {
                    return;
                }
            }
            if progress.elapsed() >= self.idle_timeout || start.elapsed() >= self.max_wait {
                eprintln!(
                    "stopped waiting for webhooks after {:.1} s",
                    start.elapsed().as_secs_f64()
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The receiver's own request rate: C connections of the bench's client
    /// posting a webhook-sized body straight to it for `time`.
    async fn receiver_limit(&self, time: Duration) -> anyhow::Result<f64> {
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

/// Per item of a batch answer, why it failed (`None`: stored). The answer is
/// read leniently: an array under `results`, `items` or `calls` (or the answer
/// itself), whose items failed when they carry an `error` or a `status` ≥ 300.
/// Without such an array the HTTP status stands for every item.
fn item_failures(answer: &str, n: usize) -> Vec<Option<String>> {
    let parsed: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
    let items = ["results", "items", "calls"]
        .iter()
        .find_map(|k| parsed.get(k).and_then(Value::as_array))
        .or_else(|| parsed.as_array());
    let Some(items) = items else {
        return vec![None; n];
    };
    (0..n)
        .map(|i| match items.get(i) {
            None => Some("missing from the batch answer".to_owned()),
            Some(item) => {
                let status = item.get("status").and_then(Value::as_u64);
                match item.get("error") {
                    Some(e) if !e.is_null() => Some(e.to_string()),
                    _ if status.is_some_and(|s| s >= 300) => Some(item.to_string()),
                    _ => None,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issues_burst() {
        let cli = Cli::try_parse_from(["callhook-bench", "burst"]).unwrap();
        assert_eq!(cli.common.concurrency, 32);
        assert_eq!(cli.common.server, "http://127.0.0.1:8080");
        let Mode::Burst(a) = cli.mode else {
            panic!("not burst")
        };
        assert_eq!((a.calls, a.batch, a.batch_size), (20_000, false, 1000));
    }

    #[test]
    fn common_flags_may_follow_the_mode() {
        let cli = Cli::try_parse_from([
            "callhook-bench",
            "steady",
            "-r",
            "2000",
            "-t",
            "5s",
            "--server",
            "http://127.0.0.1:18181",
            "-c",
            "8",
        ])
        .unwrap();
        assert_eq!(cli.common.server, "http://127.0.0.1:18181");
        assert_eq!(cli.common.concurrency, 8);
        let Mode::Steady(a) = cli.mode else {
            panic!("not steady")
        };
        assert_eq!((a.rate, a.duration), (2000, Duration::from_secs(5)));
    }

    #[test]
    fn backlog_takes_rows_and_burst_flags() {
        let cli = Cli::try_parse_from([
            "callhook-bench",
            "backlog",
            "--rows",
            "1000",
            "-n",
            "500",
            "--batch",
            "--keep",
        ])
        .unwrap();
        assert!(cli.common.keep);
        let Mode::Backlog(a) = cli.mode else {
            panic!("not backlog")
        };
        assert_eq!((a.rows, a.burst.calls, a.burst.batch), (1000, 500, true));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(Cli::try_parse_from(["callhook-bench", "burst", "--batch-size", "1001"]).is_err());
        assert!(Cli::try_parse_from(["callhook-bench", "burst", "-n", "0"]).is_err());
        assert!(Cli::try_parse_from(["callhook-bench", "steady", "-r", "0"]).is_err());
        assert!(Cli::try_parse_from(["callhook-bench", "burst", "-c", "0"]).is_err());
    }

    #[test]
    fn batch_items_fail_on_an_error_or_a_failing_status() {
        let answer = r#"{"results": [{"status": 202}, {"error": {"code": "unknown_number"}}, {"status": 409}, {"status": 200, "error": null}]}"#;
        let f = item_failures(answer, 5);
        assert_eq!(f[0], None);
        assert!(f[1].is_some() && f[2].is_some());
        assert_eq!(f[3], None);
        assert_eq!(f[4].as_deref(), Some("missing from the batch answer"));
    }

    #[test]
    fn batch_answer_without_items_stands_for_every_call() {
        assert_eq!(item_failures(r#"{"stored": 3}"#, 3), vec![None, None, None]);
    }
}
