//! The scenario form's fields as text, to and from the API's input
//! (`ScenarioInput`): textareas hold one item a line; the delivery rules
//! are rows ([`super::rows`]).
//!
//! Custom fields are `name=value` lines. Fields that such lines cannot hold
//! exactly (a name with `=` or a line break, a value with a line break,
//! spaces around either: the API accepts them) are never rewritten: the
//! form shows them as read-only JSON and sends them back as they are.

use callhook_core::{CustomField, EndpointKind, FieldError};
use callhook_store::scenarios::{Scenario, StaticNumber};
use serde::Deserialize;

use super::rows::Rules;
use crate::console::i18n::{Lang, ShownError};
use crate::ops::scenarios::{duration_text, ScenarioInput, StaticNumberView};

/// A field of the scenario form, by its name (the API's input's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScenarioField {
    Name,
    DuringCallUrl,
    AfterCallUrl,
    CustomFields,
    DuringCallFilter,
    AfterCallFilter,
    DuringCallHeaders,
    AfterCallHeaders,
    DuringCallGrace,
    RecordingWait,
    Numbers,
    StaticNumbers,
    Timezone,
}

impl ScenarioField {
    /// The form's fields, in its order.
    pub(crate) const ALL: [ScenarioField; 13] = [
        Self::Name,
        Self::DuringCallUrl,
        Self::AfterCallUrl,
        Self::CustomFields,
        Self::DuringCallFilter,
        Self::AfterCallFilter,
        Self::DuringCallHeaders,
        Self::AfterCallHeaders,
        Self::DuringCallGrace,
        Self::RecordingWait,
        Self::Numbers,
        Self::StaticNumbers,
        Self::Timezone,
    ];

    /// Its name: the form's input, the API's field.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::DuringCallUrl => "during_call_url",
            Self::AfterCallUrl => "after_call_url",
            Self::CustomFields => "custom_fields",
            Self::DuringCallFilter => "during_call_filter",
            Self::AfterCallFilter => "after_call_filter",
            Self::DuringCallHeaders => "during_call_headers",
            Self::AfterCallHeaders => "after_call_headers",
            Self::DuringCallGrace => "during_call_grace",
            Self::RecordingWait => "recording_wait",
            Self::Numbers => "numbers",
            Self::StaticNumbers => "static_numbers",
            Self::Timezone => "timezone",
        }
    }

    /// Shown as a textarea (one item a line).
    pub(crate) fn is_textarea(self) -> bool {
        matches!(
            self,
            Self::CustomFields | Self::Numbers | Self::StaticNumbers
        )
    }

    /// The webhook whose conditions it holds (a row per condition).
    pub(crate) fn conditions_of(self) -> Option<EndpointKind> {
        match self {
            Self::DuringCallFilter => Some(EndpointKind::DuringCall),
            Self::AfterCallFilter => Some(EndpointKind::AfterCall),
            _ => None,
        }
    }

    /// The webhook whose headers it holds (a row per header).
    pub(crate) fn headers_of(self) -> Option<EndpointKind> {
        match self {
            Self::DuringCallHeaders => Some(EndpointKind::DuringCall),
            Self::AfterCallHeaders => Some(EndpointKind::AfterCall),
            _ => None,
        }
    }

    /// The field of the conditions of the webhook of `kind`.
    pub(crate) fn conditions(kind: EndpointKind) -> Self {
        match kind {
            EndpointKind::DuringCall => Self::DuringCallFilter,
            EndpointKind::AfterCall => Self::AfterCallFilter,
        }
    }

    /// The dry run of the conditions is shown after it (the last list of
    /// conditions).
    pub(crate) fn ends_conditions(self) -> bool {
        self == Self::AfterCallFilter
    }

    pub(crate) fn is_custom_fields(self) -> bool {
        self == Self::CustomFields
    }
}

/// The form's fields as text (textareas hold one item a line) and the
/// rules' rows.
#[derive(Debug, Default, Deserialize)]
pub(in crate::console) struct ScenarioFormData {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) during_call_url: String,
    #[serde(default)]
    pub(super) after_call_url: String,
    #[serde(default)]
    pub(super) custom_fields: String,
    /// `json`: `custom_fields` holds the stored fields as JSON, read-only.
    #[serde(default)]
    pub(super) custom_fields_format: String,
    /// Each webhook's conditions and headers: the inputs the fields here
    /// do not name.
    #[serde(flatten)]
    pub(super) rules: Rules,
    /// A row button (`add:…`, `remove:…[i]`, `try`): the form comes back
    /// edited, nothing is saved.
    #[serde(default)]
    pub(super) edit: String,
    /// The scenario's own during-call grace (`45s`; blank: the default).
    #[serde(default)]
    pub(super) during_call_grace: String,
    /// How long an after-call webhook waits for a recording (blank: not).
    #[serde(default)]
    pub(super) recording_wait: String,
    #[serde(default)]
    pub(super) numbers: String,
    #[serde(default)]
    pub(super) static_numbers: String,
    #[serde(default)]
    pub(super) timezone: String,
}

impl crate::console::CsrfField for ScenarioFormData {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl ScenarioFormData {
    /// Each field with its value, in the form's order.
    pub(super) fn fields(&self) -> [(ScenarioField, &str); 13] {
        ScenarioField::ALL.map(|f| {
            let value: &str = match f {
                ScenarioField::Name => &self.name,
                ScenarioField::DuringCallUrl => &self.during_call_url,
                ScenarioField::AfterCallUrl => &self.after_call_url,
                ScenarioField::CustomFields => &self.custom_fields,
                // Rows: shown from `rules`.
                ScenarioField::DuringCallFilter
                | ScenarioField::AfterCallFilter
                | ScenarioField::DuringCallHeaders
                | ScenarioField::AfterCallHeaders => "",
                ScenarioField::DuringCallGrace => &self.during_call_grace,
                ScenarioField::RecordingWait => &self.recording_wait,
                ScenarioField::Numbers => &self.numbers,
                ScenarioField::StaticNumbers => &self.static_numbers,
                ScenarioField::Timezone => &self.timezone,
            };
            (f, value)
        })
    }

    pub(super) fn from_scenario(s: &Scenario) -> Self {
        Self {
            csrf: String::new(),
            name: s.name.clone(),
            during_call_url: s.during_call_url.clone().unwrap_or_default(),
            after_call_url: s.after_call_url.clone().unwrap_or_default(),
            custom_fields: if lines_hold(&s.custom_fields.0) {
                s.custom_fields
                    .0
                    .iter()
                    .map(|f| format!("{}={}", f.name, f.value))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                serde_json::to_string_pretty(&s.custom_fields.0).unwrap_or_default()
            },
            custom_fields_format: if lines_hold(&s.custom_fields.0) {
                String::new()
            } else {
                JSON.to_owned()
            },
            rules: Rules::stored(
                &s.during_call_filter.0,
                &s.after_call_filter.0,
                &s.during_call_headers.0,
                &s.after_call_headers.0,
            ),
            edit: String::new(),
            during_call_grace: duration_text(s.during_call_grace_secs).unwrap_or_default(),
            recording_wait: duration_text(s.recording_wait_secs).unwrap_or_default(),
            numbers: s.numbers.join("\n"),
            static_numbers: s
                .static_numbers
                .0
                .iter()
                .map(|n: &StaticNumber| {
                    [
                        n.number.as_str(),
                        n.marker.as_deref().unwrap_or(""),
                        n.source_level_1.as_deref().unwrap_or(""),
                        n.source_level_2.as_deref().unwrap_or(""),
                    ]
                    .join(";")
                })
                .collect::<Vec<_>>()
                .join("\n"),
            timezone: s.timezone.clone(),
        }
    }

    /// Whether the custom fields are shown read-only, as JSON.
    pub(super) fn custom_fields_as_json(&self) -> bool {
        self.custom_fields_format == JSON
    }

    /// The custom fields the text says: `name=value` lines (a line
    /// without `=` is refused, named: the lines before it are kept), or
    /// the JSON the form was given.
    fn custom_fields(&self) -> (Vec<CustomField>, Option<FieldError>) {
        if self.custom_fields_as_json() {
            return match serde_json::from_str(&self.custom_fields) {
                Ok(fields) => (fields, None),
                Err(e) => (
                    Vec::new(),
                    Some(FieldError::new(
                        "custom_fields",
                        "invalid",
                        format!("custom fields must be the JSON the form was given ({e})"),
                    )),
                ),
            };
        }
        let mut fields = Vec::new();
        for (i, l) in self.custom_fields.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let Some((name, value)) = l.split_once('=') else {
                let e = FieldError::new(
                    "custom_fields",
                    "invalid_line",
                    format!(
                        "line {} ({:?}) has no '=': write each custom field as name=value",
                        i + 1,
                        l.trim()
                    ),
                );
                return (fields, Some(e));
            };
            fields.push(CustomField {
                name: name.trim().to_owned(),
                value: value.trim().to_owned(),
            });
        }
        (fields, None)
    }

    /// The API's input, from the text and the rows: the same checks
    /// follow. What the form cannot read (a custom field line, conditions'
    /// JSON that is not the form's) comes back beside it.
    pub(super) fn input(&self) -> (ScenarioInput, Vec<FieldError>) {
        let (custom_fields, bad_line) = self.custom_fields();
        let mut unread: Vec<FieldError> = bad_line.into_iter().collect();
        let mut conditions = |kind| {
            self.rules.conditions(kind).unwrap_or_else(|e| {
                unread.push(e);
                Vec::new()
            })
        };
        let during_call_filter = conditions(EndpointKind::DuringCall);
        let after_call_filter = conditions(EndpointKind::AfterCall);
        let during_call_headers = self.rules.headers(EndpointKind::DuringCall);
        let after_call_headers = self.rules.headers(EndpointKind::AfterCall);
        let lines = |t: &str| -> Vec<String> {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let input = ScenarioInput {
            name: self.name.clone(),
            during_call_url: Some(self.during_call_url.trim().to_owned()),
            after_call_url: Some(self.after_call_url.trim().to_owned()),
            custom_fields: Some(custom_fields),
            during_call_filter: Some(during_call_filter),
            after_call_filter: Some(after_call_filter),
            during_call_headers: Some(during_call_headers),
            after_call_headers: Some(after_call_headers),
            during_call_grace: Some(self.during_call_grace.clone()),
            recording_wait: Some(self.recording_wait.clone()),
            numbers: Some(lines(&self.numbers)),
            static_numbers: Some(
                lines(&self.static_numbers)
                    .into_iter()
                    .map(|l| {
                        let mut p = l.split(';').map(str::trim);
                        StaticNumberView {
                            number: p.next().unwrap_or("").to_owned(),
                            marker: p.next().and_then(opt),
                            source_level_1: p.next().and_then(opt),
                            source_level_2: p.next().and_then(opt),
                        }
                    })
                    .collect(),
            ),
            timezone: opt(&self.timezone),
            id: None,
            signing_secret: None,
            previous_secret_expires_at: None,
            created_at: None,
            updated_at: None,
            health: None,
        };
        (input, unread)
    }
}

impl ScenarioFormData {
    /// A field's error in `lang`, at the row the form shows it beside.
    pub(super) fn shown_error(&self, lang: Lang, e: &FieldError) -> ShownError {
        lang.field_error(&FieldError {
            field: self.rules.shown_field(&e.field),
            ..e.clone()
        })
    }

    /// Where `field` (or a part of it, `numbers[2]`) stands on the form.
    pub(super) fn position(&self, field: &str) -> usize {
        self.fields()
            .iter()
            .position(|(f, _)| field.starts_with(f.name()))
            .unwrap_or(usize::MAX)
    }
}

/// `custom_fields_format` when the fields are shown as JSON.
const JSON: &str = "json";

/// Whether `name=value` lines, trimmed, give these fields back exactly.
fn lines_hold(fields: &[CustomField]) -> bool {
    fields.iter().all(|f| {
        !f.name.contains(['=', '\n', '\r'])
            && !f.value.contains(['\n', '\r'])
            && f.name.trim() == f.name
            && f.value.trim() == f.value
    })
}
