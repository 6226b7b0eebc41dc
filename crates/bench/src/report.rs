//! What one invocation prints: a human table and one JSON line.

use serde_json::{json, Value};

use crate::stats::round2;
use crate::watch::{PgUse, ServerUse};
use crate::{pg, Common, Measured, Mode};

/// Everything one invocation prints.
pub(crate) struct Report {
    pub(crate) mode: &'static str,
    pub(crate) concurrency: u16,
    pub(crate) batch: Option<u16>,
    pub(crate) rate: Option<u32>,
    pub(crate) main: Option<Measured>,
    pub(crate) empty: Option<Measured>,
    pub(crate) backlog_rows: Option<i64>,
    pub(crate) server: ServerUse,
    pub(crate) receiver_per_s: Option<f64>,
    pub(crate) pg: Option<pg::CommitRates>,
    /// The claim statement during the empty-table burst and the main one
    /// (when `pg_stat_statements` is loaded).
    pub(crate) claims_empty: Option<pg::Claims>,
    pub(crate) claims: Option<pg::Claims>,
    /// Postgres's CPU and WAL over the main phase (with `--database-url`).
    pub(crate) postgres: Option<PgUse>,
}

impl Report {
    pub(crate) fn new(mode: &Mode, c: &Common) -> Self {
        let (name, batch, rate) = match mode {
            Mode::Burst(a) => ("burst", a.batch.then_some(a.batch_size), None),
            Mode::Steady(a) => ("steady", None, Some(a.rate)),
            Mode::Backlog(a) => ("backlog", a.burst.batch.then_some(a.burst.batch_size), None),
            Mode::Neighbours(a) => ("neighbours", Some(1000), Some(a.quiet_rate)),
        };
        Self {
            mode: name,
            concurrency: c.concurrency,
            batch,
            rate,
            main: None,
            empty: None,
            backlog_rows: None,
            server: ServerUse::default(),
            receiver_per_s: None,
            pg: None,
            claims_empty: None,
            claims: None,
            postgres: None,
        }
    }

    pub(crate) fn ratio(&self) -> Option<f64> {
        let (m, e) = (self.main.as_ref()?, self.empty.as_ref()?);
        (e.deliveries_per_s > 0.0).then(|| m.deliveries_per_s / e.deliveries_per_s)
    }

    pub(crate) fn print(&self) {
        let Some(m) = &self.main else { return };
        println!();
        print_phase(self.mode, m);
        let mb = |b: Option<u64>| {
            b.map_or("n/a".to_owned(), |b| {
                format!("{:.1} MB", b as f64 / 1048576.0)
            })
        };
        if let (Some(rows), Some(ratio)) = (self.backlog_rows, self.ratio()) {
            println!("  {:<34} {rows}", "preloaded pending deliveries");
            println!("  {:<34} {ratio:.2}", "backlog / empty deliveries/s");
        }
        if let Some(p) = self.postgres {
            let n = m.acked.max(1) as f64;
            println!(
                "  {:<34} {:.2} s; {:.3} ms per delivery",
                "postgres CPU (every postgres proc)",
                p.cpu_s,
                p.cpu_s * 1000.0 / n
            );
            println!(
                "  {:<34} {:.1} MB; {:.0} bytes per delivery",
                "WAL written",
                p.wal_bytes as f64 / 1048576.0,
                p.wal_bytes as f64 / n
            );
        }
        for (phase, c) in [("empty", &self.claims_empty), (self.mode, &self.claims)] {
            if let Some(c) = c {
                println!(
                    "  {:<34} {} calls, mean {:.3} ms, max {:.3} ms, mean+2.33σ {:.3} ms",
                    format!("claim statement ({phase})"),
                    c.calls,
                    c.mean_ms,
                    c.max_ms,
                    c.p99_estimate_ms()
                );
            }
        }
        let cpu = self
            .server
            .cpu_s
            .map_or("n/a".to_owned(), |s| format!("{s:.2} s"));
        println!("  {:<34} {cpu}", "server CPU (utime+stime)");
        println!(
            "  {:<34} {}",
            "server peak RSS (VmRSS, sampled)",
            mb(self.server.peak_rss)
        );
        println!(
            "  {:<34} {}",
            "server VmHWM (since its start)",
            mb(self.server.vm_hwm)
        );
        if let Some(r) = self.receiver_per_s {
            println!("machine limits");
            println!("  {:<34} {r:.0} req/s", "receiver under a plain load gen");
        }
        if let Some(p) = &self.pg {
            println!(
                "  {:<34} {:.0} tx/s",
                "postgres ingest-like commits", p.ingest_per_s
            );
            println!(
                "  {:<34} {:.0} tx/s",
                "postgres completion-like commits", p.complete_per_s
            );
            println!(
                "  {:<34} {:.0} /s",
                "postgres deliveries (both)",
                p.per_delivery()
            );
        }
        println!("{}", self.json());
    }

    pub(crate) fn json(&self) -> Value {
        let m = self.main.as_ref();
        let lat = m.and_then(|m| m.latency);
        json!({
            "mode": self.mode,
            "calls": m.map(|m| m.calls),
            "concurrency": self.concurrency,
            "batch": self.batch,
            "rate": self.rate,
            "acked": m.map(|m| m.acked),
            "ingest_errors": m.map(|m| m.ingest_errors),
            "ingest_per_s": m.map(|m| round2(m.ingest_per_s)),
            "deliveries_per_s": m.map(|m| round2(m.deliveries_per_s)),
            "lost": m.map(|m| m.lost),
            "duplicates": m.map(|m| m.duplicates),
            "p50_ms": lat.map(|l| round2(l.p50)),
            "p95_ms": lat.map(|l| round2(l.p95)),
            "p99_ms": lat.map(|l| round2(l.p99)),
            "max_ms": lat.map(|l| round2(l.max)),
            "arrived_before_ack": m.map(|m| m.before_ack),
            "send_p50_ms": m.and_then(|m| m.send_latency).map(|l| round2(l.p50)),
            "send_p99_ms": m.and_then(|m| m.send_latency).map(|l| round2(l.p99)),
            "ack_p50_ms": m.and_then(|m| m.ack_latency).map(|l| round2(l.p50)),
            "ack_p99_ms": m.and_then(|m| m.ack_latency).map(|l| round2(l.p99)),
            "backlog_rows": self.backlog_rows,
            "empty_deliveries_per_s": self.empty.as_ref().map(|e| round2(e.deliveries_per_s)),
            "backlog_ratio": self.ratio().map(round2),
            "pg_cpu_s": self.postgres.map(|p| round2(p.cpu_s)),
            "pg_cpu_ms_per_delivery": self.postgres.zip(m).map(|(p, m)| (p.cpu_s * 1e6 / m.acked.max(1) as f64).round() / 1000.0),
            "wal_bytes_per_delivery": self.postgres.zip(m).map(|(p, m)| (p.wal_bytes as f64 / m.acked.max(1) as f64).round()),
            "claim_mean_ms": self.claims.map(|c| round2(c.mean_ms)),
            "claim_p99_estimate_ms": self.claims.map(|c| round2(c.p99_estimate_ms())),
            "claim_empty_mean_ms": self.claims_empty.map(|c| round2(c.mean_ms)),
            "claim_empty_p99_estimate_ms": self.claims_empty.map(|c| round2(c.p99_estimate_ms())),
            "server_cpu_s": self.server.cpu_s.map(round2),
            "server_peak_rss_mb": self.server.peak_rss.map(|b| round2(b as f64 / 1048576.0)),
            "server_vmhwm_mb": self.server.vm_hwm.map(|b| round2(b as f64 / 1048576.0)),
            "receiver_limit_per_s": self.receiver_per_s.map(round2),
            "pg_ingest_tx_per_s": self.pg.map(|p| round2(p.ingest_per_s)),
            "pg_complete_tx_per_s": self.pg.map(|p| round2(p.complete_per_s)),
            "pg_deliveries_per_s": self.pg.map(|p| round2(p.per_delivery())),
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }
}

pub(crate) fn print_phase(name: &str, m: &Measured) {
    println!("{name}");
    println!(
        "  {:<34} {} ({} acknowledged, {} refused)",
        "calls", m.calls, m.acked, m.ingest_errors
    );
    println!("  {:<34} {:.0} calls/s", "ingest", m.ingest_per_s);
    if let Some(l) = m.ack_latency {
        println!(
            "  {:<34} p50 {:.2} / p95 {:.2} / p99 {:.2} / max {:.2} ms",
            "request sent → acknowledged", l.p50, l.p95, l.p99, l.max
        );
    }
    println!(
        "  {:<34} {:.0} /s",
        "end-to-end deliveries", m.deliveries_per_s
    );
    println!("  {:<34} {}", "lost (acknowledged, never arrived)", m.lost);
    println!("  {:<34} {}", "duplicates", m.duplicates);
    if let Some(l) = m.latency {
        println!(
            "  {:<34} p50 {:.2} / p95 {:.2} / p99 {:.2} / max {:.2} ms",
            "ack → arrival", l.p50, l.p95, l.p99, l.max
        );
        println!(
            "  {:<34} {}",
            "arrived before the ack (counted 0)", m.before_ack
        );
    }
    if let Some(l) = m.send_latency {
        println!(
            "  {:<34} p50 {:.2} / p95 {:.2} / p99 {:.2} / max {:.2} ms",
            "request sent → arrival", l.p50, l.p95, l.p99, l.max
        );
    }
}
