//! Delivery rules: conditions on a call that must all hold for a webhook to
//! be sent (a scenario's `during_call_filter` and `after_call_filter`).
//!
//! A condition is `{"field", "op", "value"}`. `field` is a payload field
//! (the placeholder vocabulary) or the derived `first_call`; `op` is one of
//! `eq`, `ne`, `in`, `not_in`, `prefix`, `gte`, `lte`, `present`, `absent`.
//! Each field has a type: text, a number (`order_id`, `duration`) or a
//! truth (`first_call`), and a value of another type is refused when the
//! scenario is saved, naming the condition (`after_call_filter[1].value`).
//! A field unknown at the call's start (`status`, `duration`, `file_id`,
//! `link`) is refused in a `during_call_filter`.
//!
//! Conditions are evaluated when a delivery is created, on the call as it
//! is then; an absent field (`null` in the payload) satisfies only `ne`,
//! `not_in` and `absent`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::payload::{field_value, FieldValue, AFTER_CALL_EXTRA_FIELDS};
use crate::{Call, EndpointKind, FieldError, Timezone};

/// At most this many conditions per webhook.
pub const MAX_CONDITIONS: usize = 20;
/// At most this many values in an `in` or `not_in` list.
pub const MAX_LIST: usize = 100;
/// Longest text value in a condition.
pub const MAX_TEXT: usize = 1024;

/// The derived field: no earlier call from this caller reached this
/// scenario.
pub const FIRST_CALL: &str = "first_call";

/// The fields a condition of the webhook of `kind` may name, in the
/// payload's order: the payload's (the placeholder vocabulary; for the
/// during-call webhook only those known at the call's start), then
/// `first_call`.
pub fn fields(kind: EndpointKind) -> impl Iterator<Item = &'static str> + Clone {
    crate::payload::placeholder_fields()
        .filter(move |f| kind == EndpointKind::AfterCall || !AFTER_CALL_EXTRA_FIELDS.contains(f))
        .chain([FIRST_CALL])
}

text_enum! {
    /// A condition's operator.
    pub enum Op ("op", "invalid_op") {
        Eq = "eq",
        Ne = "ne",
        In = "in",
        NotIn = "not_in",
        Prefix = "prefix",
        Gte = "gte",
        Lte = "lte",
        Present = "present",
        Absent = "absent",
    }
}

/// One condition, as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    pub op: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
}

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
    Truth,
}

impl Kind {
    fn of(field: &str) -> Option<Self> {
        match field {
            FIRST_CALL => Some(Self::Truth),
            "order_id" | "duration" => Some(Self::Number),
            f if fields(EndpointKind::AfterCall).any(|p| p == f) => Some(Self::Text),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "a number",
            Self::Truth => "true or false",
        }
    }

    fn fits(self, v: &Value) -> bool {
        match self {
            Self::Text => v.is_string(),
            Self::Number => v.is_i64(),
            Self::Truth => v.is_boolean(),
        }
    }
}

/// A webhook's conditions, checked: every one must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Filter(Vec<Condition>);

impl Filter {
    /// Checks `conditions` for the webhook of `kind`; an error names the
    /// condition's part (`after_call_filter[1].value`).
    pub fn parse(conditions: Vec<Condition>, kind: EndpointKind) -> Result<Self, FieldError> {
        let base = match kind {
            EndpointKind::DuringCall => "during_call_filter",
            EndpointKind::AfterCall => "after_call_filter",
        };
        if conditions.len() > MAX_CONDITIONS {
            return Err(FieldError::new(
                base,
                "too_many",
                format!("{base} must have at most {MAX_CONDITIONS} conditions"),
            ));
        }
        for (i, c) in conditions.iter().enumerate() {
            check(c, kind, &format!("{base}[{i}]"))?;
        }
        Ok(Self(conditions))
    }

    /// Wraps conditions read back from the database, where only parsed
    /// ones are written.
    pub fn from_trusted(conditions: Vec<Condition>) -> Self {
        Self(conditions)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Condition] {
        &self.0
    }

    /// Whether a condition needs `first_call` (a look-up the store makes
    /// only then).
    pub fn needs_first_call(&self) -> bool {
        self.0.iter().any(|c| c.field == FIRST_CALL)
    }

    /// The first condition that does not hold for `call` (in `tz`;
    /// `first_call` as the store found it), or `None` when all hold.
    pub fn first_failing(&self, call: &Call, tz: Timezone, first_call: bool) -> Option<&Condition> {
        self.0.iter().find(|c| !holds(c, call, tz, first_call))
    }
}

fn check(c: &Condition, kind: EndpointKind, at: &str) -> Result<(), FieldError> {
    let Some(field_kind) = Kind::of(&c.field) else {
        return Err(FieldError::new(
            format!("{at}.field"),
            "unknown_field",
            format!(
                "{:?} is not a payload field; use one of {}",
                c.field,
                fields(EndpointKind::AfterCall)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    if kind == EndpointKind::DuringCall && AFTER_CALL_EXTRA_FIELDS.contains(&c.field.as_str()) {
        return Err(FieldError::new(
            format!("{at}.field"),
            "not_known_at_start",
            format!(
                "{} is not known when the call starts: use it in after_call_filter",
                c.field
            ),
        ));
    }
    let op: Op =
        c.op.parse()
            .map_err(|e: FieldError| FieldError::new(format!("{at}.op"), e.code, e.message))?;
    let takes = match op {
        Op::Present | Op::Absent => c.value.is_null().then_some(()).ok_or("no value".to_owned()),
        Op::Eq | Op::Ne => field_kind
            .fits(&c.value)
            .then_some(())
            .ok_or(field_kind.name().to_owned()),
        Op::In | Op::NotIn => c
            .value
            .as_array()
            .is_some_and(|l| {
                !l.is_empty() && l.len() <= MAX_LIST && l.iter().all(|v| field_kind.fits(v))
            })
            .then_some(())
            .ok_or(format!(
                "a list of 1 to {MAX_LIST} values, each {}",
                field_kind.name()
            )),
        Op::Prefix => (field_kind == Kind::Text && c.value.is_string())
            .then_some(())
            .ok_or("text, on a text field".to_owned()),
        Op::Gte | Op::Lte => (field_kind == Kind::Number && c.value.is_i64())
            .then_some(())
            .ok_or("a number, on a number field (order_id, duration)".to_owned()),
    };
    if let Err(what) = takes {
        return Err(FieldError::new(
            format!("{at}.value"),
            "invalid_value",
            format!("{} with {} takes {what}", c.field, op.as_str()),
        ));
    }
    let long = |v: &Value| v.as_str().is_some_and(|s| s.chars().count() > MAX_TEXT);
    if long(&c.value) || c.value.as_array().is_some_and(|l| l.iter().any(long)) {
        return Err(FieldError::new(
            format!("{at}.value"),
            "too_long",
            format!("a condition's text must be at most {MAX_TEXT} characters"),
        ));
    }
    Ok(())
}

/// Whether `c` holds for `call`.
fn holds(c: &Condition, call: &Call, tz: Timezone, first_call: bool) -> bool {
    let actual = if c.field == FIRST_CALL {
        Some(Value::Bool(first_call))
    } else {
        match field_value(call, tz, &c.field) {
            Some(FieldValue::Str(Some(s))) => Some(Value::String(s.into_owned())),
            Some(FieldValue::Int(Some(i))) => Some(Value::from(i)),
            _ => None,
        }
    };
    let Ok(op) = c.op.parse::<Op>() else {
        return false;
    };
    let list = || c.value.as_array().map(Vec::as_slice).unwrap_or_default();
    match (op, actual) {
        (Op::Present, a) => a.is_some(),
        (Op::Absent, a) => a.is_none(),
        (Op::Eq, Some(a)) => a == c.value,
        (Op::Ne, a) => a.as_ref() != Some(&c.value),
        (Op::In, Some(a)) => list().contains(&a),
        (Op::NotIn, a) => a.is_none_or(|a| !list().contains(&a)),
        (Op::Prefix, Some(Value::String(a))) => c.value.as_str().is_some_and(|p| a.starts_with(p)),
        (Op::Gte, Some(a)) => a
            .as_i64()
            .zip(c.value.as_i64())
            .is_some_and(|(a, v)| a >= v),
        (Op::Lte, Some(a)) => a
            .as_i64()
            .zip(c.value.as_i64())
            .is_some_and(|(a, v)| a <= v),
        (Op::Eq | Op::In | Op::Prefix | Op::Gte | Op::Lte, _) => false,
    }
}

mod text;

#[cfg(test)]
mod tests;
