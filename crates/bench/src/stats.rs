//! Percentiles and rates: the bench's only arithmetic.

use std::time::Duration;

/// Latency percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentiles of the samples (exact: a run holds at most a few
/// hundred thousand samples, so sorting them is cheaper than a histogram's
/// rounding is worth). `None` without samples.
pub(crate) fn percentiles(samples: &mut [Duration]) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |q: f64| ms(samples[nearest_rank(samples.len(), q)]);
    Some(Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: ms(samples[samples.len() - 1]),
    })
}

/// The 0-based index of the q-quantile by nearest rank: the smallest sample
/// with at least q of the samples at or below it.
pub(crate) fn nearest_rank(len: usize, q: f64) -> usize {
    debug_assert!(len > 0 && (0.0..=1.0).contains(&q));
    let rank = (q * len as f64).ceil() as usize;
    rank.clamp(1, len) - 1
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `count` per second over `elapsed`; 0 for an empty interval.
pub(crate) fn rate(count: usize, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        count as f64 / s
    } else {
        0.0
    }
}

/// Rounds for printing and JSON: rates to whole units, milliseconds to 0.01.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_samples(v: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        v.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_are_their_ranks() {
        let mut s = ms_samples((1..=100).rev());
        let p = percentiles(&mut s).unwrap();
        assert_eq!(
            p,
            Percentiles {
                p50: 50.0,
                p95: 95.0,
                p99: 99.0,
                max: 100.0
            }
        );
    }

    #[test]
    fn percentiles_of_few_samples_pick_an_existing_sample() {
        let mut s = ms_samples([7, 3]);
        let p = percentiles(&mut s).unwrap();
        assert_eq!((p.p50, p.p95, p.p99, p.max), (3.0, 7.0, 7.0, 7.0));
        let mut one = ms_samples([5]);
        assert_eq!(percentiles(&mut one).unwrap().p99, 5.0);
    }

    #[test]
    fn percentiles_of_nothing_are_none() {
        assert_eq!(percentiles(&mut []), None);
    }

    #[test]
    fn p99_of_a_thousand_samples_ignores_the_ten_slowest() {
        let mut s = ms_samples(std::iter::repeat_n(1, 990).chain(std::iter::repeat_n(500, 10)));
        let p = percentiles(&mut s).unwrap();
        assert_eq!((p.p99, p.max), (1.0, 500.0));
    }

    #[test]
    fn rate_over_an_empty_interval_is_zero() {
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(rate(2000, Duration::from_millis(500)), 4000.0);
    }
}
