//! A scenario's duration settings (`during_call_grace`, `recording_wait`):
//! how they are read, bounded and shown.

use callhook_core::FieldError;

/// A scenario's duration setting: its field, and the longest it may be.
pub(crate) struct DurationSetting {
    field: &'static str,
    max: std::time::Duration,
    message: &'static str,
}

/// A scenario's own grace for a during-call webhook after its call's end.
pub(crate) const DURING_CALL_GRACE: DurationSetting = DurationSetting {
    field: "during_call_grace",
    max: std::time::Duration::from_secs(3600),
    message: "during_call_grace must be a duration such as 30s or 2m, at most 1h",
};

/// How long an after-call webhook waits for a recording its end lacked.
pub(crate) const RECORDING_WAIT: DurationSetting = DurationSetting {
    field: "recording_wait",
    max: std::time::Duration::from_secs(1800),
    message: "recording_wait must be a duration such as 30s or 2m, at most 30m",
};

impl DurationSetting {
    /// The setting as given (`"45s"`, `"2m"`): blank is none.
    pub(crate) fn parse(
        &self,
        text: Option<&str>,
    ) -> Result<Option<std::time::Duration>, FieldError> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        match humantime::parse_duration(text) {
            Ok(d) if d <= self.max => Ok(Some(d)),
            _ => Err(FieldError::new(
                self.field,
                "invalid_duration",
                self.message,
            )),
        }
    }
}

/// A stored duration setting as the API answers it and the form shows it
/// (`10m`), the form [`DurationSetting::parse`] reads back.
pub(crate) fn duration_text(secs: Option<i32>) -> Option<String> {
    secs.map(|s| {
        humantime::format_duration(std::time::Duration::from_secs(
            u64::try_from(s).unwrap_or(0),
        ))
        .to_string()
    })
}
