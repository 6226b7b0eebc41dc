//! `neighbours`: does one scenario's flood delay another's webhooks? The
//! bench's own scenario is the quiet one: R calls a second, each its own
//! request. Alone first; then while a second scenario ("flood") sends N calls
//! through the batch API (1,000 to a request, a few requests in flight) to a
//! fast receiver; then while another sends M calls to a receiver that answers
//! after 500 ms (a slow CRM); then while an operator recovers K failed
//! deliveries of another scenario in bulk (`POST /api/v1/deliveries/retry`).
//! Each phase prints the quiet scenario's request sent → webhook arrival
//! percentiles and the flood's delivered rate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::future::join_all;
use serde_json::{json, Value};

use crate::driver::{Bench, Sent};
use crate::receiver::{self, Arrivals};
use crate::stats::{percentiles, rate, round2, Percentiles};
use crate::NeighboursArgs;

/// What one phase measured.
pub(crate) struct Phase {
    pub(crate) name: String,
    /// The quiet scenario's request sent → arrival.
    pub(crate) quiet: Option<Percentiles>,
    pub(crate) quiet_lost: usize,
    /// The flood's webhooks that arrived within the phase, per second.
    pub(crate) flood_per_s: Option<f64>,
    pub(crate) flood_ingest_s: Option<f64>,
    /// From the phase's start until the last flood call's webhook arrived,
    /// when every one did within the phase and `--settle`.
    pub(crate) flood_drained_s: Option<f64>,
    /// The flood's calls, every flood of the phase together.
    pub(crate) flood_calls: Option<usize>,
}

/// A flood scenario: its id, its number and its receiver's arrivals.
struct Flood {
    id: String,
    callee: String,
    arrivals: Arc<Arrivals>,
}

impl Bench {
    /// Runs the phases and prints them (the bulk recover only with the
    /// server's database, to preload the failed deliveries).
    pub(crate) async fn neighbours(
        &self,
        a: &NeighboursArgs,
        database_url: Option<&str>,
    ) -> anyhow::Result<Vec<Phase>> {
        let mut phases = Vec::new();
        let alone = self.quiet_for(a, "alone", a.window / 3).await;
        phases.push(self.phase("quiet alone", alone, None, None).await);
        print_phase(phases.last().expect("pushed"));

        let slow_name = match a.slow_receivers {
            1 => format!(
                "flood of {} to a receiver taking {:?}",
                a.slow_calls, a.slow_delay
            ),
            n => format!(
                "floods of {} to each of {n} receivers taking {:?}",
                a.slow_calls, a.slow_delay
            ),
        };
        for (name, calls, delay, receivers) in [
            (
                format!("flood of {} to a fast receiver", a.fast_calls),
                a.fast_calls,
                Duration::ZERO,
                1,
            ),
            (slow_name, a.slow_calls, a.slow_delay, a.slow_receivers),
        ] {
            let mut floods = Vec::new();
            for k in 1..=receivers {
                floods.push(self.flood_scenario(&name, delay, k).await?);
            }
            let started = Instant::now();
            let quiet_phase = format!("under-{}", phases.len());
            let flooding = join_all(floods.iter().enumerate().map(|(k, flood)| {
                let prefix = format!("bench-{}-flood-{}-{k}-", self.run, phases.len());
                async move {
                    self.flood_batches(flood, &prefix, calls as usize, a.batches_in_flight)
                        .await
                }
            }));
            let (quiet, ingested) =
                tokio::join!(self.quiet_for(a, &quiet_phase, a.window), flooding);
            let ingested = ingested
                .into_iter()
                .try_fold(Duration::ZERO, |longest, d| anyhow::Ok(longest.max(d?)))?;
            let window = started.elapsed();
            let delivered: usize = floods.iter().map(|f| f.arrivals.total() as usize).sum();
            let mut p = self
                .phase(
                    &name,
                    quiet,
                    Some(rate(delivered, window)),
                    Some(ingested.as_secs_f64()),
                )
                .await;
            p.flood_drained_s = settle(&floods, calls as usize, started, a.settle).await;
            p.flood_calls = Some(floods.len() * calls as usize);
            print_phase(&p);
            phases.push(p);
            for flood in &floods {
                self.delete_flood(flood).await;
            }
        }
        match database_url {
            Some(url) if a.recover > 0 => {
                let p = self.recover_phase(a, url).await?;
                print_phase(&p);
                phases.push(p);
            }
            _ if a.recover == 0 => {}
            _ => eprintln!("note: no bulk-recover phase (it needs --database-url)"),
        }
        Ok(phases)
    }

    /// An operator's bulk recover of `a.recover` failed deliveries (to a
    /// fast receiver) beside the quiet scenario: requeued in the lowest
    /// priority class, they must not delay fresh calls.
    async fn recover_phase(&self, a: &NeighboursArgs, url: &str) -> anyhow::Result<Phase> {
        let name = format!("bulk recover of {} failed", a.recover);
        let flood = self.flood_scenario(&name, Duration::ZERO, 1).await?;
        let pool = crate::pg::connect(url, 2).await?;
        let id: uuid::Uuid = flood.id.parse().context("the flood's scenario id")?;
        let prefix = format!("bench-{}-recover-", self.run);
        crate::pg::preload_failed(&pool, id, &flood.callee, &prefix, a.recover).await?;
        let started = Instant::now();
        let recover = async {
            // A third of the window quiet first, then the recover.
            tokio::time::sleep(a.window / 3).await;
            self.http
                .post(format!(
                    "{}/api/v1/deliveries/retry?scenario_id={}&state=failed",
                    self.server, flood.id
                ))
                .header("authorization", &self.admin_auth)
                .send()
                .await
                .context("the bulk recover")?
                .error_for_status()
                .context("the bulk recover")
        };
        let (quiet, recovered) = tokio::join!(self.quiet_for(a, "recover", a.window), recover);
        recovered?;
        let window = started.elapsed();
        let delivered = flood.arrivals.total() as usize;
        let p = self
            .phase(&name, quiet, Some(rate(delivered, window)), None)
            .await;
        self.delete_flood(&flood).await;
        Ok(p)
    }

    /// The quiet scenario's calls at `a.quiet_rate` a second for `window`.
    async fn quiet_for(&self, a: &NeighboursArgs, phase: &str, window: Duration) -> Vec<Sent> {
        let total = (f64::from(a.quiet_rate) * window.as_secs_f64()).round() as usize;
        self.paced(a.quiet_rate, total, |i| {
            format!("bench-{}-quiet-{phase}-{i}", self.run)
        })
        .await
    }

    /// Waits for the quiet calls' webhooks and works out the phase's figures.
    async fn phase(
        &self,
        name: &str,
        quiet: Vec<Sent>,
        flood_per_s: Option<f64>,
        flood_ingest_s: Option<f64>,
    ) -> Phase {
        let acked: Vec<&Sent> = quiet.iter().filter(|s| s.acked.is_some()).collect();
        self.wait_for(&acked).await;
        let arrivals = self.arrivals.lookup(acked.iter().map(|s| s.id.as_str()));
        let mut latencies: Vec<Duration> = acked
            .iter()
            .zip(&arrivals)
            .filter_map(|(s, a)| Some(a.as_ref()?.first.saturating_duration_since(s.sent)))
            .collect();
        Phase {
            name: name.to_owned(),
            quiet_lost: acked.len() - latencies.len() + (quiet.len() - acked.len()),
            quiet: percentiles(&mut latencies),
            flood_per_s,
            flood_ingest_s,
            flood_drained_s: None,
            flood_calls: None,
        }
    }

    /// A scenario of its own sending during-call webhooks to a receiver of
    /// its own that answers after `delay`; its number is the bench's with
    /// `k` (1 to 99) added to the last two digits: unique per run and `k`.
    async fn flood_scenario(&self, name: &str, delay: Duration, k: u32) -> anyhow::Result<Flood> {
        let (addr, arrivals) = receiver::start_answering_after(delay).await?;
        let split = self
            .callee
            .len()
            .checked_sub(2)
            .context("the bench's number is short")?;
        let (head, tail) = self.callee.split_at(split);
        let tail: u32 = tail.parse().context("the bench's number ends in digits")?;
        let callee = format!("{head}{:02}", (tail + k) % 100);
        let answer = self
            .http
            .post(format!("{}/api/v1/scenarios", self.server))
            .header("authorization", &self.admin_auth)
            .header("content-type", "application/json")
            .body(
                json!({
                    "name": format!("callhook-bench {} {name}", self.run),
                    "numbers": [callee],
                    "during_call_url": format!("http://{addr}/flood"),
                })
                .to_string(),
            )
            .send()
            .await
            .context("creating the flood's scenario")?;
        let status = answer.status();
        let body: Value =
            serde_json::from_str(&answer.text().await.context("the scenario answer")?)
                .context("the scenario answer is not JSON")?;
        if !status.is_success() {
            bail!("creating the flood's scenario: {status}: {body}");
        }
        let id = body["id"]
            .as_str()
            .context("no id in the scenario answer")?
            .to_owned();
        Ok(Flood {
            id,
            callee,
            arrivals,
        })
    }

    /// `n` calls to the flood's number, 1,000 to a batch, `in_flight`
    /// batches at once; returns how long ingesting them took.
    async fn flood_batches(
        &self,
        flood: &Flood,
        prefix: &str,
        n: usize,
        in_flight: usize,
    ) -> anyhow::Result<Duration> {
        let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        let chunks: Vec<Vec<String>> = ids.chunks(1000).map(<[String]>::to_vec).collect();
        let next = &AtomicUsize::new(0);
        let chunks = &chunks;
        let started = Instant::now();
        let worker = move || async move {
            loop {
                let Some(chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return anyhow::Ok(());
                };
                let sent = self.send_batch_to(chunk.clone(), &flood.callee).await?;
                if let Some(e) = self.take_error() {
                    eprintln!("warning: flood batch: {e}");
                }
                drop(sent);
            }
        };
        for r in join_all((0..in_flight.max(1)).map(|_| worker())).await {
            r?;
        }
        Ok(started.elapsed())
    }

    async fn delete_flood(&self, flood: &Flood) {
        let r = self
            .http
            .delete(format!("{}/api/v1/scenarios/{}", self.server, flood.id))
            .header("authorization", &self.admin_auth)
            .send()
            .await;
        if !r.is_ok_and(|r| r.status().is_success()) {
            eprintln!(
                "warning: could not delete the flood's scenario {}",
                flood.id
            );
        }
    }
}

/// Waits, up to `limit` past the phase's end, until each flood's `calls`
/// webhooks arrived (a phase's backlog must not spill into the next one's
/// figures); how long from `started` that took, or `None` (with a note) if
/// it did not happen. A flood that at its rate so far would need longer
/// than `limit` (the slow receiver's) is not waited for.
async fn settle(floods: &[Flood], calls: usize, started: Instant, limit: Duration) -> Option<f64> {
    let deadline = Instant::now() + limit;
    let left = || -> usize {
        floods
            .iter()
            .map(|f| calls.saturating_sub(f.arrivals.distinct()))
            .sum()
    };
    let due = left();
    let needs =
        started.elapsed().as_secs_f64() * due as f64 / (floods.len() * calls - due).max(1) as f64;
    if due > 0 && needs > limit.as_secs_f64() && !limit.is_zero() {
        eprintln!(
            "note: {due} flood webhooks still due; at the flood's rate they need \
             longer than --settle ({limit:?}): its scenario is deleted with them"
        );
        return None;
    }
    loop {
        let left = left();
        if left == 0 {
            let last = floods
                .iter()
                .filter_map(|f| f.arrivals.latest_first())
                .max()?;
            return Some(last.saturating_duration_since(started).as_secs_f64());
        }
        if Instant::now() >= deadline {
            if !limit.is_zero() {
                eprintln!(
                    "note: {left} flood webhooks still due {limit:?} after the phase; \
                     the flood's scenario is deleted with them"
                );
            }
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_phase(p: &Phase) {
    println!("{}", p.name);
    match p.quiet {
        Some(l) => println!(
            "  {:<38} p50 {:.2} / p99 {:.2} / max {:.2} ms ({} lost)",
            "quiet: request sent → webhook arrival", l.p50, l.p99, l.max, p.quiet_lost
        ),
        None => println!("  quiet: nothing arrived"),
    }
    if let (Some(r), Some(i)) = (p.flood_per_s, p.flood_ingest_s) {
        println!(
            "  {:<38} {r:.0} /s (ingested in {i:.1} s)",
            "flood: delivered within the phase"
        );
    }
    if let (Some(d), Some(n)) = (p.flood_drained_s, p.flood_calls) {
        println!(
            "  {:<38} {d:.1} s ({:.0} /s)",
            "flood: every webhook arrived after",
            n as f64 / d.max(f64::EPSILON)
        );
    }
}

/// The phases as one JSON line, for docs/performance.md.
pub(crate) fn json(phases: &[Phase]) -> Value {
    Value::Array(
        phases
            .iter()
            .map(|p| {
                json!({
                    "phase": p.name,
                    "quiet_p50_ms": p.quiet.map(|l| round2(l.p50)),
                    "quiet_p99_ms": p.quiet.map(|l| round2(l.p99)),
                    "quiet_max_ms": p.quiet.map(|l| round2(l.max)),
                    "quiet_lost": p.quiet_lost,
                    "flood_delivered_per_s": p.flood_per_s.map(|r| r.round()),
                    "flood_drained_s": p.flood_drained_s.map(round2),
                })
            })
            .collect(),
    )
}
