use std::time::Duration;

use crate::FieldError;

/// The persistent retry schedule: the delays before each retry. The first
/// attempt is immediate; `5s,5m,30m,2h,5h,10h,10h` (the default) means at
/// most 8 attempts over about 28 hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

/// Each delay is multiplied by a factor in `1 ± JITTER`, so receivers that
/// failed together are not retried together.
pub const JITTER: f64 = 0.2;

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::parse(Self::DEFAULT).expect("the default schedule parses")
    }
}

impl std::str::FromStr for RetrySchedule {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::parse(s)
    }
}

impl RetrySchedule {
    pub const DEFAULT: &'static str = "5s,5m,30m,2h,5h,10h,10h";

    /// Comma-separated durations (`500ms`, `5s`, `5m`, `2h`, `1d`); an empty
    /// string means no retries at all.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let err = |m: String| FieldError::new("CALLHOOK_RETRY_SCHEDULE", "invalid_schedule", m);
        let delays = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| humantime::parse_duration(p).map_err(|e| err(format!("{p:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if delays.len() > 100 {
            return Err(err("at most 100 retries".into()));
        }
        Ok(Self { delays })
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// First attempt plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }

    /// The delay before the next attempt once `attempts_made` (≥ 1) attempts
    /// failed, jittered by `unit` (uniform in `[0, 1)`); `None` when the
    /// schedule is exhausted and the delivery has failed for good.
    ///
    /// `retry_after`, a receiver's `Retry-After` on 429/503, replaces the
    /// scheduled delay, kept within the schedule's shortest and longest delay.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        unit: f64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let base = *self.delays.get((attempts_made.max(1) - 1) as usize)?;
        if let Some(asked) = retry_after {
            let min = self.delays.iter().min().copied().unwrap_or_default();
            let max = self.delays.iter().max().copied().unwrap_or_default();
            return Some(asked.clamp(min, max));
        }
        let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
        Some(base.mul_f64(factor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_has_eight_attempts() {
        let s = RetrySchedule::default();
        assert_eq!(s.max_attempts(), 8);
        assert_eq!(s.delays()[1], Duration::from_secs(300));
        assert_eq!(RetrySchedule::parse("1s,1s,2s").unwrap().max_attempts(), 4);
        assert_eq!(RetrySchedule::parse("").unwrap().max_attempts(), 1);
        assert!(RetrySchedule::parse("5x").is_err());
    }

    #[test]
    fn exhausted_after_last_delay() {
        let s = RetrySchedule::parse("1s,2s").unwrap();
        assert_eq!(s.next_delay(1, 0.5, None), Some(Duration::from_secs(1)));
        assert_eq!(s.next_delay(2, 0.5, None), Some(Duration::from_secs(2)));
        assert_eq!(s.next_delay(3, 0.5, None), None);
    }

    #[test]
    fn retry_after_is_bounded_by_the_schedule() {
        let s = RetrySchedule::parse("1s,10s").unwrap();
        assert_eq!(
            s.next_delay(1, 0.5, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            s.next_delay(1, 0.5, Some(Duration::ZERO)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            s.next_delay(1, 0.5, Some(Duration::from_secs(4))),
            Some(Duration::from_secs(4))
        );
        assert_eq!(s.next_delay(3, 0.5, Some(Duration::from_secs(4))), None);
    }

    proptest! {
        #[test]
        fn jitter_stays_in_band(secs in proptest::collection::vec(1u64..100_000, 1..10), unit in 0.0f64..1.0) {
            let text = secs.iter().map(|s| format!("{s}s")).collect::<Vec<_>>().join(",");
            let s = RetrySchedule::parse(&text).unwrap();
            for (i, base) in secs.iter().enumerate() {
                let d = s.next_delay(i as u32 + 1, unit, None).unwrap().as_secs_f64();
                let base = *base as f64;
                prop_assert!(d >= base * 0.8 - 1e-6 && d <= base * 1.2 + 1e-6, "{d} vs {base}");
            }
            prop_assert_eq!(s.next_delay(secs.len() as u32 + 1, unit, None), None);
        }

        #[test]
        fn retry_after_stays_within_the_schedules_bounds(
            secs in proptest::collection::vec(1u64..100_000, 1..10),
            asked in 0u64..10_000_000,
            attempt in 1u32..10,
            unit in 0.0f64..1.0,
        ) {
            let text = secs.iter().map(|s| format!("{s}s")).collect::<Vec<_>>().join(",");
            let s = RetrySchedule::parse(&text).unwrap();
            let (min, max) = (*secs.iter().min().unwrap(), *secs.iter().max().unwrap());
            match s.next_delay(attempt, unit, Some(Duration::from_secs(asked))) {
                Some(d) => {
                    prop_assert!((attempt as usize) <= secs.len());
                    prop_assert!(d >= Duration::from_secs(min) && d <= Duration::from_secs(max), "{d:?}");
                }
                None => prop_assert!((attempt as usize) > secs.len(), "exhausted only past the last delay"),
            }
        }

        #[test]
        fn the_default_schedule_is_monotone_and_bounded_whatever_the_jitter(
            units in proptest::collection::vec(0.0f64..1.0, 7),
        ) {
            let s = RetrySchedule::default();
            let delays: Vec<Duration> = (1..s.max_attempts())
                .map(|a| s.next_delay(a, units[(a - 1) as usize], None).unwrap())
                .collect();
            // The nominal delays never shrink; where one grows past the jitter
            // band (all but the equal 10h,10h), the jittered ones cannot cross.
            let nominal_delays = s.delays();
            prop_assert!(nominal_delays.windows(2).all(|w| w[0] <= w[1]));
            for i in 1..delays.len() {
                if nominal_delays[i].as_secs_f64() >= nominal_delays[i - 1].as_secs_f64() * 1.5 {
                    prop_assert!(delays[i - 1] <= delays[i], "{delays:?}");
                }
            }
            let total: Duration = delays.iter().sum();
            let nominal: Duration = s.delays().iter().sum();
            prop_assert!(total <= nominal.mul_f64(1.0 + JITTER) && total >= nominal.mul_f64(1.0 - JITTER));
            prop_assert_eq!(s.next_delay(s.max_attempts(), 0.5, None), None);
        }

        #[test]
        fn jitter_is_monotone_in_unit(base in 1u64..100_000, a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let s = RetrySchedule::parse(&format!("{base}s")).unwrap();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(s.next_delay(1, lo, None) <= s.next_delay(1, hi, None));
        }
    }
}
