//! How a phase is measured: the acknowledged calls' webhooks waited for,
//! then rates, losses, duplicates and latencies worked out.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::driver::{Bench, Sent};
use crate::stats::{percentiles, rate, Percentiles};

/// What one sending phase measured.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) calls: usize,
    pub(crate) acked: usize,
    pub(crate) ingest_errors: usize,
    pub(crate) ingest_per_s: f64,
    pub(crate) deliveries_per_s: f64,
    pub(crate) lost: usize,
    pub(crate) duplicates: u64,
    /// Ingest acknowledged → first arrival at the receiver.
    pub(crate) latency: Option<Percentiles>,
    /// Ingest request sent → first arrival (never negative, unlike the above).
    pub(crate) send_latency: Option<Percentiles>,
    /// Ingest request sent → its acknowledgement read (the API's answer time).
    pub(crate) ack_latency: Option<Percentiles>,
    /// Webhooks that arrived before their call's acknowledgement did.
    pub(crate) before_ack: usize,
}

impl Bench {
    /// Waits for the acknowledged calls' webhooks, then works out the figures.
    pub(crate) async fn measure(&self, sent: Vec<Sent>) -> anyhow::Result<Measured> {
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
            ack_latency: percentiles(&mut ack_latencies(&acked)),
            before_ack,
        })
    }

    /// Until every acknowledged call arrived, or none arrived for
    /// `idle_timeout`, or `max_wait` passed.
    pub(crate) async fn wait_for(&self, acked: &[&Sent]) {
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
}

/// Each acknowledged call's time from sent to acknowledged.
fn ack_latencies(acked: &[&Sent]) -> Vec<Duration> {
    let answered = |s: &&Sent| Some(s.acked?.saturating_duration_since(s.sent));
    acked.iter().filter_map(answered).collect()
}
