//! The scenario form's fields as text, to and from the API's input
//! (`ScenarioInput`): textareas hold one item a line.
//!
//! Custom fields are `name=value` lines. Fields that such lines cannot hold
//! exactly (a name with `=` or a line break, a value with a line break,
//! spaces around either: the API accepts them) are never rewritten: the
//! form shows them as read-only JSON and sends them back as they are.

use callhook_core::{Condition, CustomField, FieldError, Header};
use callhook_store::scenarios::{Scenario, StaticNumber};
use serde::Deserialize;

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
            Self::CustomFields
                | Self::DuringCallFilter
                | Self::AfterCallFilter
                | Self::DuringCallHeaders
                | Self::AfterCallHeaders
                | Self::Numbers
                | Self::StaticNumbers
        )
    }

    pub(crate) fn is_custom_fields(self) -> bool {
        self == Self::CustomFields
    }
}

/// The form's fields as text (textareas hold one item a line).
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
    /// Each webhook's conditions as a JSON list (blank: every call).
    #[serde(default)]
    pub(super) during_call_filter: String,
    #[serde(default)]
    pub(super) after_call_filter: String,
    /// Each webhook's headers as a JSON list (a secret one's value null:
    /// kept as stored; blank: none).
    #[serde(default)]
    pub(super) during_call_headers: String,
    #[serde(default)]
    pub(super) after_call_headers: String,
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
            let value = match f {
                ScenarioField::Name => &self.name,
                ScenarioField::DuringCallUrl => &self.during_call_url,
                ScenarioField::AfterCallUrl => &self.after_call_url,
                ScenarioField::CustomFields => &self.custom_fields,
                ScenarioField::DuringCallFilter => &self.during_call_filter,
                ScenarioField::AfterCallFilter => &self.after_call_filter,
                ScenarioField::DuringCallHeaders => &self.during_call_headers,
                ScenarioField::AfterCallHeaders => &self.after_call_headers,
                ScenarioField::DuringCallGrace => &self.during_call_grace,
                ScenarioField::RecordingWait => &self.recording_wait,
                ScenarioField::Numbers => &self.numbers,
                ScenarioField::StaticNumbers => &self.static_numbers,
                ScenarioField::Timezone => &self.timezone,
            };
            (f, value.as_str())
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
            during_call_filter: conditions_text(&s.during_call_filter.0),
            after_call_filter: conditions_text(&s.after_call_filter.0),
            during_call_headers: headers_text(&s.during_call_headers.0),
            after_call_headers: headers_text(&s.after_call_headers.0),
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

    /// The API's input, from the text: the same checks follow. What the
    /// text cannot be read as (a custom field line, a condition list that
    /// is not JSON) comes back beside it.
    pub(super) fn input(&self) -> (ScenarioInput, Vec<FieldError>) {
        let (custom_fields, bad_line) = self.custom_fields();
        let mut unread: Vec<FieldError> = bad_line.into_iter().collect();
        let mut conditions = |text: &str, field: &str| {
            read_conditions(text, field).unwrap_or_else(|e| {
                unread.push(e);
                Vec::new()
            })
        };
        let during_call_filter = conditions(&self.during_call_filter, "during_call_filter");
        let after_call_filter = conditions(&self.after_call_filter, "after_call_filter");
        let mut headers = |text: &str, field: &str| {
            read_json_list::<Header>(text, field, HEADERS_EXAMPLE).unwrap_or_else(|e| {
                unread.push(e);
                Vec::new()
            })
        };
        let during_call_headers = headers(&self.during_call_headers, "during_call_headers");
        let after_call_headers = headers(&self.after_call_headers, "after_call_headers");
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
    /// Where `field` (or a part of it, `numbers[2]`) stands on the form.
    pub(super) fn position(&self, field: &str) -> usize {
        self.fields()
            .iter()
            .position(|(f, _)| field.starts_with(f.name()))
            .unwrap_or(usize::MAX)
    }
}

/// Conditions as the form shows them: a JSON list, blank when none.
fn conditions_text(conditions: &[Condition]) -> String {
    if conditions.is_empty() {
        return String::new();
    }
    serde_json::to_string_pretty(conditions).unwrap_or_default()
}

/// Headers as the form shows them: a JSON list, a secret one's value null;
/// blank when none.
fn headers_text(headers: &[Header]) -> String {
    if headers.is_empty() {
        return String::new();
    }
    let shown: Vec<Header> = headers.iter().map(Header::shown).collect();
    serde_json::to_string_pretty(&shown).unwrap_or_default()
}

const CONDITIONS_EXAMPLE: &str = r#"[{"field": "duration", "op": "gte", "value": 10}]"#;
const HEADERS_EXAMPLE: &str = r#"[{"name": "Authorization", "value": "Bearer …", "secret": true}]"#;

/// The conditions a form's text holds (blank: none).
fn read_conditions(text: &str, field: &str) -> Result<Vec<Condition>, FieldError> {
    read_json_list(text, field, CONDITIONS_EXAMPLE)
}

/// A JSON list a form's textarea holds (blank: none).
fn read_json_list<T: serde::de::DeserializeOwned>(
    text: &str,
    field: &str,
    example: &str,
) -> Result<Vec<T>, FieldError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(|e| {
        FieldError::new(
            field,
            "invalid_json",
            format!("{field} must be a JSON list such as {example} ({e})"),
        )
    })
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
