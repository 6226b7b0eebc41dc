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

mod driver;
mod measure;
mod neighbours;
mod pg;
mod procfs;
mod receiver;
mod report;
mod send;
mod stats;
mod watch;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::driver::Bench;
use crate::measure::Measured;
use crate::report::{print_phase, Report};
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
    /// The quiet bench scenario at R calls/s, alone, then beside a flood of
    /// another scenario by batch to a fast receiver, then beside one to a
    /// receiver taking 500 ms: the quiet webhooks' latency in each.
    Neighbours(NeighboursArgs),
}

#[derive(Debug, Args)]
struct NeighboursArgs {
    /// The quiet scenario's calls per second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    quiet_rate: u32,
    /// How long the quiet scenario sends beside each flood (a third of it alone).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Calls of the flood to the fast receiver.
    #[arg(long, default_value_t = 30_000)]
    fast_calls: u32,
    /// Calls of the flood to the slow receiver.
    #[arg(long, default_value_t = 3_000)]
    slow_calls: u32,
    /// How long the slow receiver takes to answer.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    slow_delay: Duration,
    /// Slow floods at once, each its own scenario and receiver (host), each
    /// of --slow-calls calls.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    slow_receivers: u32,
    /// Flood batch requests in flight at once.
    #[arg(long, default_value_t = 4)]
    batches_in_flight: usize,
    /// Failed deliveries of another scenario an operator recovers in bulk
    /// beside the quiet one (preloaded by SQL: needs --database-url; 0 skips).
    #[arg(long, default_value_t = 20_000)]
    recover: i64,
    /// After each flood's phase, how long to wait for the flood's webhooks to
    /// be delivered before its scenario is deleted: the next phase then starts
    /// without the last one's backlog (0: delete at once).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    settle: Duration,
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

///
/// The bench's modes, one arm each. Stays whole: a table of what each mode
/// runs and prints.
async fn run(cli: &Cli, bench: &Bench) -> anyhow::Result<()> {
    let c = &cli.common;
    let mut report = Report::new(&cli.mode, c);
    let server = ServerProc::find(c);
    if let Mode::Neighbours(a) = &cli.mode {
        let phases = bench.neighbours(a, c.database_url.as_deref()).await?;
        println!("{}", neighbours::json(&phases));
        return Ok(());
    }
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
        Mode::Neighbours(_) => unreachable!("run above"),
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
}
