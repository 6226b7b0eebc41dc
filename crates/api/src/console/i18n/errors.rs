//! Errors in the page's language. An error carries a stable `code` (the
//! API's, in its JSON answers) and an English `message`: English pages show
//! the message as it is; Russian pages show the Russian sentence for its
//! code ([`super::ru_errors`]), the field's Russian name, and, where the
//! English message names what the sentence cannot (a number, a line, a
//! scenario), that message beside it. A code this codebase does not produce
//! falls back to the English message; every code it does produce is listed
//! in [`ErrorCode`] (a test reads the source to check it).

use super::{labels::Labels, Lang};
use crate::console::scenario_form::ScenarioField;

/// Declares [`ErrorCode`]: its variants, their codes and `ALL`.
macro_rules! error_codes {
    ($($variant:ident = $code:literal,)+) => {
        /// Every error code this codebase produces.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            pub(crate) const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }
        }
    };
}

error_codes! {
    Required = "required",
    TooLong = "too_long",
    InvalidCharacters = "invalid_characters",
    Invalid = "invalid",
    InvalidUrl = "invalid_url",
    NoUrl = "no_url",
    Duplicate = "duplicate",
    UnknownPlaceholder = "unknown_placeholder",
    TooMany = "too_many",
    DuplicateNumber = "duplicate_number",
    PayloadTooLarge = "payload_too_large",
    InvalidLine = "invalid_line",
    NumberTaken = "number_taken",
    InvalidNumber = "invalid_number",
    OutOfRange = "out_of_range",
    InvalidTimezone = "invalid_timezone",
    InvalidDate = "invalid_date",
    InvalidTime = "invalid_time",
    InvalidPhone = "invalid_phone",
    InvalidKind = "invalid_kind",
    InvalidState = "invalid_state",
    InvalidReason = "invalid_reason",
    InvalidError = "invalid_error",
    InvalidStatus = "invalid_status",
    InvalidCallId = "invalid_call_id",
    InvalidIp = "invalid_ip",
    InvalidType = "invalid_type",
    InvalidSecret = "invalid_secret",
    InvalidSigningSecret = "invalid_signing_secret",
    InvalidSchedule = "invalid_schedule",
    InvalidCursor = "invalid_cursor",
    InvalidLimit = "invalid_limit",
    InvalidQuery = "invalid_query",
    InvalidBatch = "invalid_batch",
    InvalidJson = "invalid_json",
    UnknownField = "unknown_field",
    NotKnownAtStart = "not_known_at_start",
    InvalidValue = "invalid_value",
    InvalidOp = "invalid_op",
    InvalidHeader = "invalid_header",
    ReservedHeader = "reserved_header",
    InvalidDuration = "invalid_duration",
    BodyTooLarge = "body_too_large",
    BodyUnreadable = "body_unreadable",
    UnknownScenario = "unknown_scenario",
    UnknownNumber = "unknown_number",
    EmptyPool = "empty_pool",
    FilterRequired = "filter_required",
    NotAfterCall = "not_after_call",
    RebuiltTooLarge = "rebuilt_too_large",
    NotFound = "not_found",
    CallNotFound = "call_not_found",
    Conflict = "conflict",
    Csrf = "csrf",
    Unauthorized = "unauthorized",
    TooManyFailures = "too_many_failures",
    Template = "template",
    Internal = "internal",
    DatabaseUnavailable = "database_unavailable",
    DamagedData = "damaged_data",
    ShuttingDown = "shutting_down",
    Interrupted = "interrupted",
    Overloaded = "overloaded",
    RequestTimeout = "request_timeout",
    MethodNotAllowed = "method_not_allowed",
}

impl ErrorCode {
    pub(crate) fn parse(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// Whether the English message names what the translated sentence
    /// cannot (the value, a limit, a line, another scenario, an id): then
    /// it is shown beside the sentence.
    fn names_specifics(self) -> bool {
        match self {
            Self::TooLong
            | Self::Duplicate
            | Self::UnknownPlaceholder
            | Self::TooMany
            | Self::DuplicateNumber
            | Self::PayloadTooLarge
            | Self::InvalidLine
            | Self::NumberTaken
            | Self::OutOfRange
            | Self::InvalidPhone
            | Self::InvalidTimezone
            | Self::InvalidDate
            | Self::NotFound
            | Self::CallNotFound
            | Self::Conflict
            | Self::UnknownNumber
            | Self::TooManyFailures
            | Self::DamagedData
            | Self::Invalid
            | Self::InvalidSchedule
            | Self::InvalidType
            | Self::UnknownField
            | Self::NotKnownAtStart
            | Self::InvalidValue
            | Self::InvalidOp
            | Self::InvalidHeader
            | Self::ReservedHeader
            | Self::InvalidJson
            | Self::BodyUnreadable
            | Self::InvalidDuration
            | Self::RebuiltTooLarge => true,
            Self::Required
            | Self::NotAfterCall
            | Self::InvalidCharacters
            | Self::InvalidUrl
            | Self::NoUrl
            | Self::InvalidNumber
            | Self::InvalidTime
            | Self::InvalidKind
            | Self::InvalidState
            | Self::InvalidReason
            | Self::InvalidError
            | Self::InvalidStatus
            | Self::InvalidCallId
            | Self::InvalidIp
            | Self::InvalidSecret
            | Self::InvalidSigningSecret
            | Self::InvalidCursor
            | Self::InvalidLimit
            | Self::InvalidQuery
            | Self::InvalidBatch
            | Self::BodyTooLarge
            | Self::UnknownScenario
            | Self::EmptyPool
            | Self::FilterRequired
            | Self::Csrf
            | Self::Unauthorized
            | Self::Template
            | Self::Internal
            | Self::DatabaseUnavailable
            | Self::ShuttingDown
            | Self::Interrupted
            | Self::Overloaded
            | Self::RequestTimeout
            | Self::MethodNotAllowed => false,
        }
    }
}

/// An input the console names in an error, by its JSON name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldName {
    Scenario(ScenarioField),
    ScenarioId,
    CallId,
    State,
    Kind,
    Since,
    Until,
    MaxInFlight,
    MaxPerSecond,
    Url,
    SigningSecret,
}

impl FieldName {
    fn parse(name: &str) -> Option<Self> {
        if let Some(f) = ScenarioField::ALL.iter().find(|f| f.name() == name) {
            return Some(Self::Scenario(*f));
        }
        Some(match name {
            "scenario_id" => Self::ScenarioId,
            "call_id" => Self::CallId,
            "state" => Self::State,
            "kind" => Self::Kind,
            "since" => Self::Since,
            "until" => Self::Until,
            "max_in_flight" => Self::MaxInFlight,
            "max_per_second" => Self::MaxPerSecond,
            "url" => Self::Url,
            "signing_secret" => Self::SigningSecret,
            _ => return None,
        })
    }
}

/// An error as a page shows it.
#[derive(Debug, Clone)]
pub(crate) struct ShownError {
    /// The input's JSON name (or path, `numbers[2]`), as the API names it.
    pub(crate) field: Option<String>,
    /// The input's name in the page's language, where the message does not
    /// name it already (English messages do).
    pub(crate) label: Option<String>,
    /// What is wrong, in the page's language.
    pub(crate) text: String,
    /// The English message, beside a translation that leaves out what it
    /// names.
    pub(crate) detail: Option<String>,
}

impl ShownError {
    /// Whether it is about `field` or a part of it (`numbers[2]`).
    pub(crate) fn is_at(&self, field: &str) -> bool {
        self.field.as_deref().is_some_and(|f| f.starts_with(field))
    }

    /// Whether it is about the item `at` (`after_call_filter[1]`) or a
    /// part of it, not another item whose number starts alike.
    pub(crate) fn is_at_item(&self, at: &str) -> bool {
        self.field.as_deref().is_some_and(|f| {
            f.strip_prefix(at)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    /// The input's JSON name, or "".
    pub(crate) fn field_or_empty(&self) -> &str {
        self.field.as_deref().unwrap_or("")
    }
}

/// `custom_fields[2].value`: the input's name in `labels`, with the item's
/// number (from 1) when there is one.
fn describe(path: &str, labels: &Labels) -> Option<String> {
    let base = path.split(['[', '.']).next().unwrap_or(path);
    let name = labels.field_name(FieldName::parse(base)?);
    let item = path
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(n, _)| n.parse::<usize>().ok());
    Some(match item {
        Some(i) => format!("{name}, {}{}", labels.item, i + 1),
        None => name.to_owned(),
    })
}

impl Lang {
    /// An error (`code`, English `message`, at `field`) in this language.
    pub(crate) fn error(self, field: Option<&str>, code: &str, message: &str) -> ShownError {
        let english = ShownError {
            field: field.map(str::to_owned),
            label: None,
            text: message.to_owned(),
            detail: None,
        };
        let translate = |code: ErrorCode, text: &'static str| ShownError {
            label: field.and_then(|f| describe(f, self.labels())),
            text: text.to_owned(),
            detail: code.names_specifics().then(|| message.to_owned()),
            ..english.clone()
        };
        match (self, ErrorCode::parse(code)) {
            (Self::En, _) | (Self::Ru, None) => english,
            (Self::Ru, Some(c)) => translate(c, super::ru_errors::message(c)),
        }
    }

    /// A field's error in this language.
    pub(crate) fn field_error(self, e: &callhook_core::FieldError) -> ShownError {
        self.error(Some(&e.field), e.code, &e.message)
    }
}
