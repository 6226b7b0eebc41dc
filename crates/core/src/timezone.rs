use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::FieldError;

/// An IANA time zone, e.g. `Europe/Moscow` (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timezone(Tz);

impl Default for Timezone {
    fn default() -> Self {
        Self(chrono_tz::Europe::Moscow)
    }
}

impl Timezone {
    pub const DEFAULT_NAME: &'static str = "Europe/Moscow";
    /// Times that belong to no scenario (an operator event) are shown in UTC.
    pub const UTC: Self = Self(Tz::UTC);

    pub fn parse(name: &str, field: &str) -> Result<Self, FieldError> {
        name.parse::<Tz>().map(Self).map_err(|_| {
            FieldError::new(
                field,
                "invalid_timezone",
                format!("{name:?} is not an IANA time zone (e.g. Europe/Moscow)"),
            )
        })
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// `YYYY-MM-DD HH:MM:SS` in this zone, as the webhook payload's `date`.
    pub fn format_payload_date(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.0)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    /// `YYYY-MM-DD HH:MM:SS +03:00`: the instant in this zone, with its
    /// offset, as the console shows times.
    pub fn format_with_offset(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.0)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string()
    }

    /// Reads a call's `date`: RFC 3339 with an offset as is; `YYYY-MM-DD
    /// HH:MM:SS` (or with a `T`) without one as a wall-clock time in this zone.
    /// In the hour a clock goes back the earlier instant is taken; a time
    /// skipped when it goes forward is an error.
    pub fn parse_date(&self, input: &str, field: &str) -> Result<DateTime<Utc>, FieldError> {
        if let Ok(at) = DateTime::parse_from_rfc3339(input) {
            return Ok(at.with_timezone(&Utc));
        }
        let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(input, f).ok())
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    "invalid_date",
                    "date must be RFC 3339 (2019-02-19T00:00:00+03:00) or YYYY-MM-DD HH:MM:SS in the scenario's time zone",
                )
            })?;
        match self.0.from_local_datetime(&naive) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => Ok(at.with_timezone(&Utc)),
            LocalResult::None => Err(FieldError::new(
                field,
                "invalid_date",
                format!(
                    "{input} does not exist in {} (the clocks skip it)",
                    self.name()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_with_the_zones_offset() {
        let at = DateTime::parse_from_rfc3339("2026-07-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let tz = Timezone::parse("Asia/Yekaterinburg", "timezone").unwrap();
        assert_eq!(tz.format_with_offset(at), "2026-07-01 17:00:00 +05:00");
        let tz = Timezone::parse("America/New_York", "timezone").unwrap();
        assert_eq!(tz.format_with_offset(at), "2026-07-01 08:00:00 -04:00");
    }

    #[test]
    fn moscow_wall_clock_round_trips() {
        let tz = Timezone::default();
        let at = tz.parse_date("2019-02-19 00:00:00", "date").unwrap();
        assert_eq!(at.to_rfc3339(), "2019-02-18T21:00:00+00:00");
        assert_eq!(tz.format_payload_date(at), "2019-02-19 00:00:00");
    }

    #[test]
    fn rfc3339_offset_wins_over_zone() {
        let tz = Timezone::parse("Asia/Yekaterinburg", "timezone").unwrap();
        let at = tz.parse_date("2019-02-19T00:00:00+03:00", "date").unwrap();
        assert_eq!(tz.format_payload_date(at), "2019-02-19 02:00:00");
    }

    #[test]
    fn rejects_unknown_zone_and_bad_date() {
        assert_eq!(
            Timezone::parse("Mars/Olympus", "timezone")
                .unwrap_err()
                .code,
            "invalid_timezone"
        );
        assert_eq!(
            Timezone::default()
                .parse_date("19.02.2019", "date")
                .unwrap_err()
                .field,
            "date"
        );
    }
}
