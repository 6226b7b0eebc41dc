//! A scenario's settings as the admin API takes them (`POST`/`PUT
//! /api/v1/scenarios`) and the console's form fills them, and their checks:
//! one set of rules, so an error names the same field from either side.

use callhook_core::{
    headers, Condition, CustomField, CustomFields, EndpointKind, FieldError, Filter, Header,
    PhoneNumber, Timezone, WebhookUrl,
};
use callhook_store::scenarios::{ScenarioSettings, StaticNumber};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::durations::{DURING_CALL_GRACE, RECORDING_WAIT};

/// A static number (offline ads): never reserved; calls to it carry its
/// `marker`, `source_level_1` and `source_level_2`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticNumberView {
    /// Written any way people write them; stored as digits.
    pub(crate) number: String,
    #[serde(default)]
    pub(crate) marker: Option<String>,
    #[serde(default)]
    pub(crate) source_level_1: Option<String>,
    #[serde(default)]
    pub(crate) source_level_2: Option<String>,
}

/// One custom field: `value` may hold `{placeholders}` naming payload fields.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes the JSON shape in the OpenAPI document"
)]
pub(crate) struct CustomFieldSchema {
    name: String,
    value: String,
}

/// One condition on the call (`docs/payload.md`, "Delivery rules"): `field`
/// a payload field or `first_call`; `op` one of `eq`, `ne`, `in`, `not_in`,
/// `prefix`, `gte`, `lte`, `present`, `absent`; `value` of the field's type
/// (a list for `in`/`not_in`, none for `present`/`absent`).
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes the JSON shape in the OpenAPI document"
)]
pub(crate) struct ConditionSchema {
    field: String,
    op: String,
    #[schema(value_type = Option<Value>)]
    value: serde_json::Value,
}

/// One header sent with every attempt of a webhook (`docs/payload.md`,
/// "Headers per webhook"): `secret` ones are stored sealed and answered
/// with `value` null.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "only describes the JSON shape in the OpenAPI document"
)]
pub(crate) struct HeaderSchema {
    name: String,
    value: Option<String>,
    #[schema(default = false)]
    secret: bool,
}

/// A scenario's settings. Only `name` is required; the rest default to no
/// URLs, no custom fields, no numbers and `Europe/Moscow`. Read-only fields
/// (`id`, `signing_secret`, timestamps) are accepted and ignored, so what
/// `GET` returns can be sent back as is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "the read-only fields are accepted and ignored")]
pub(crate) struct ScenarioInput {
    /// Not blank, at most 255 characters.
    #[schema(min_length = 1)]
    pub(crate) name: String,
    /// Empty string or null = no during-call webhook.
    #[serde(default)]
    pub(crate) during_call_url: Option<String>,
    /// Empty string or null = no after-call webhook.
    #[serde(default)]
    pub(crate) after_call_url: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<CustomFieldSchema>>)]
    pub(crate) custom_fields: Option<Vec<CustomField>>,
    /// Conditions every call must meet for its during-call webhook to be
    /// sent; empty or absent: every call.
    #[serde(default)]
    #[schema(value_type = Option<Vec<ConditionSchema>>)]
    pub(crate) during_call_filter: Option<Vec<Condition>>,
    /// The same for the after-call webhook.
    #[serde(default)]
    #[schema(value_type = Option<Vec<ConditionSchema>>)]
    pub(crate) after_call_filter: Option<Vec<Condition>>,
    /// Headers sent with every during-call webhook; a secret one's `value`
    /// may be null to keep what is stored.
    #[serde(default)]
    #[schema(value_type = Option<Vec<HeaderSchema>>)]
    pub(crate) during_call_headers: Option<Vec<Header>>,
    /// The same for the after-call webhook.
    #[serde(default)]
    #[schema(value_type = Option<Vec<HeaderSchema>>)]
    pub(crate) after_call_headers: Option<Vec<Header>>,
    /// How long after its call's end a during-call webhook not delivered
    /// yet may still go (`"45s"`, `"2m"`; at most `1h`); empty or null:
    /// `CALLHOOK_DURING_CALL_GRACE`.
    #[serde(default)]
    pub(crate) during_call_grace: Option<String>,
    /// How long an after-call webhook whose call ended without a recording
    /// waits for one (`"2m"`; at most `30m`); empty or null: it does not wait.
    #[serde(default)]
    pub(crate) recording_wait: Option<String>,
    /// Written any way people write them (`+7 (800) 555-22-33`); stored as digits.
    #[serde(default)]
    pub(crate) numbers: Option<Vec<String>>,
    /// Numbers outside the pool with fixed fields; a number is in `numbers`
    /// or here, not both.
    #[serde(default)]
    pub(crate) static_numbers: Option<Vec<StaticNumberView>>,
    #[serde(default)]
    pub(crate) timezone: Option<String>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub(crate) id: Option<serde_json::Value>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub(crate) signing_secret: Option<serde_json::Value>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub(crate) previous_secret_expires_at: Option<serde_json::Value>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub(crate) created_at: Option<serde_json::Value>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub(crate) updated_at: Option<serde_json::Value>,
    /// Read-only: accepted whatever it holds, and ignored.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub(crate) health: Option<serde_json::Value>,
}

impl ScenarioInput {
    /// What the webhook bodies depend on (the custom fields and the zone),
    /// checked as a save checks them: the console's live preview uses it.
    pub(crate) fn payload_parts(&self) -> Result<(CustomFields, Timezone), FieldError> {
        let fields = CustomFields::parse(self.custom_fields.clone().unwrap_or_default())?;
        let timezone = match &self.timezone {
            Some(tz) => Timezone::parse(tz, "timezone")?,
            None => Timezone::default(),
        };
        Ok((fields, timezone))
    }

    /// The settings to store, every field checked, or every field's error
    /// at once (one per field: name, numbers, static numbers, the URLs,
    /// custom fields, zone; then custom fields that could alone make a body
    /// pass `max_payload` bytes, every placeholder at its longest value; then
    /// the delivery rules: conditions, the grace, headers), so a form can
    /// show them all. The API answers the first, as it always did.
    ///
    /// Stays whole: one check per field in the order errors are answered,
    /// then the one assembly of what they all gave.
    pub(crate) fn check(self, max_payload: usize) -> Result<ScenarioSettings, Vec<FieldError>> {
        let mut errors = Vec::new();
        let e = &mut errors;
        let name = keep(e, check_name(&self.name));
        let numbers = keep(e, parse_numbers(self.numbers.unwrap_or_default()));
        let static_numbers = keep(
            e,
            parse_static_numbers(
                self.static_numbers.unwrap_or_default(),
                numbers.as_deref().unwrap_or_default(),
            ),
        );
        let url = |v: Option<String>, field| match v {
            Some(s) => WebhookUrl::parse_optional(&s, field),
            None => Ok(None),
        };
        let during_call_url = keep(e, url(self.during_call_url, "during_call_url"));
        let after_call_url = keep(e, url(self.after_call_url, "after_call_url"));
        let custom_fields = keep(
            e,
            CustomFields::parse(self.custom_fields.unwrap_or_default()),
        );
        let timezone = keep(
            e,
            match &self.timezone {
                Some(tz) => Timezone::parse(tz, "timezone"),
                None => Ok(Timezone::default()),
            },
        );
        // What the fields may weigh is checked last, as it always was.
        let custom_fields = custom_fields.and_then(|f| keep(e, fits(f, max_payload)));
        let during_call_filter = keep(
            e,
            Filter::parse(
                self.during_call_filter.unwrap_or_default(),
                EndpointKind::DuringCall,
            ),
        );
        let after_call_filter = keep(
            e,
            Filter::parse(
                self.after_call_filter.unwrap_or_default(),
                EndpointKind::AfterCall,
            ),
        );
        let headers = |given: Option<Vec<Header>>, kind| {
            let given = given.unwrap_or_default();
            headers::check(&given, kind).map(|()| given)
        };
        let during_call_grace = keep(
            e,
            DURING_CALL_GRACE.parse(self.during_call_grace.as_deref()),
        );
        let recording_wait = keep(e, RECORDING_WAIT.parse(self.recording_wait.as_deref()));
        let during_call_headers = keep(
            e,
            headers(self.during_call_headers, EndpointKind::DuringCall),
        );
        let after_call_headers = keep(e, headers(self.after_call_headers, EndpointKind::AfterCall));
        match (
            name,
            numbers,
            static_numbers,
            during_call_url,
            after_call_url,
            custom_fields,
            timezone,
            during_call_filter,
            after_call_filter,
            during_call_headers,
            after_call_headers,
            during_call_grace,
            recording_wait,
        ) {
            (
                Some(name),
                Some(numbers),
                Some(static_numbers),
                Some(during_call_url),
                Some(after_call_url),
                Some(custom_fields),
                Some(timezone),
                Some(during_call_filter),
                Some(after_call_filter),
                Some(during_call_headers),
                Some(after_call_headers),
                Some(during_call_grace),
                Some(recording_wait),
            ) => Ok(ScenarioSettings {
                static_numbers,
                name,
                during_call_url,
                after_call_url,
                custom_fields,
                during_call_filter,
                after_call_filter,
                during_call_headers,
                after_call_headers,
                during_call_grace,
                recording_wait,
                numbers,
                timezone,
            }),
            _ => Err(errors),
        }
    }
}

/// The value, or `None` with its error noted.
fn keep<T>(errors: &mut Vec<FieldError>, r: Result<T, FieldError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn check_name(name: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(FieldError::new(
            "name",
            "required",
            "name must not be empty",
        ));
    }
    callhook_core::call::check_text("name", name, 255)?;
    Ok(name.to_owned())
}

fn parse_numbers(numbers: Vec<String>) -> Result<Vec<PhoneNumber>, FieldError> {
    numbers
        .iter()
        .enumerate()
        .map(|(i, n)| PhoneNumber::parse(n, &format!("numbers[{i}]")))
        .collect()
}

/// Static numbers, each once and none also among `numbers`.
fn parse_static_numbers(
    given: Vec<StaticNumberView>,
    numbers: &[PhoneNumber],
) -> Result<Vec<StaticNumber>, FieldError> {
    let mut seen: std::collections::HashSet<String> =
        numbers.iter().map(|n| n.as_str().to_owned()).collect();
    let mut static_numbers = Vec::new();
    for (i, n) in given.into_iter().enumerate() {
        let field = |name: &str| format!("static_numbers[{i}].{name}");
        let number = PhoneNumber::parse(&n.number, &field("number"))?;
        if !seen.insert(number.as_str().to_owned()) {
            return Err(FieldError::new(
                field("number"),
                "duplicate_number",
                format!("number {number} is listed twice; a number is either in numbers or in static_numbers, once"),
            ));
        }
        let text = |v: Option<String>, name: &str| {
            v.map(|t| {
                callhook_core::call::check_text(
                    &field(name),
                    &t,
                    callhook_core::call::MAX_FIELD_LEN,
                )
                .map(str::to_owned)
            })
            .transpose()
        };
        static_numbers.push(StaticNumber {
            number: number.as_str().to_owned(),
            marker: text(n.marker, "marker")?,
            source_level_1: text(n.source_level_1, "source_level_1")?,
            source_level_2: text(n.source_level_2, "source_level_2")?,
        });
    }
    Ok(static_numbers)
}

/// The custom fields, unless alone they could make a body pass
/// `max_payload` bytes.
fn fits(fields: CustomFields, max_payload: usize) -> Result<CustomFields, FieldError> {
    let longest = fields.longest_bytes();
    if longest > max_payload {
        return Err(FieldError::new(
            "custom_fields",
            "payload_too_large",
            format!("with every placeholder at its longest value the custom fields alone take {longest} bytes, over the {max_payload}-byte limit of a webhook (CALLHOOK_MAX_PAYLOAD_BYTES): use fewer placeholders"),
        ));
    }
    Ok(fields)
}
