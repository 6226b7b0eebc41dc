use std::borrow::Cow;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::payload::placeholder_fields;
use crate::FieldError;

/// At most this many custom fields per scenario.
pub const MAX_FIELDS: usize = 50;
/// Longest custom field value (before expansion).
pub const MAX_VALUE_LEN: usize = 1024;
/// Longest custom field name.
pub const MAX_NAME_LEN: usize = 255;

/// One extra field the scenario adds to its webhooks' `custom_fields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomField {
    pub name: String,
    /// May hold `{field}` placeholders naming payload fields, e.g. `{utm_source}`.
    pub value: String,
}

/// A scenario's custom fields, checked: names non-empty and unique, values
/// short, every placeholder names a payload field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CustomFields(Vec<CustomField>);

impl CustomFields {
    pub fn parse(fields: Vec<CustomField>) -> Result<Self, FieldError> {
        if fields.len() > MAX_FIELDS {
            return Err(FieldError::new(
                "custom_fields",
                "too_many",
                format!("at most {MAX_FIELDS} custom fields, got {}", fields.len()),
            ));
        }
        let mut seen = HashSet::new();
        for (i, f) in fields.iter().enumerate() {
            let at = |part: &str| format!("custom_fields[{i}].{part}");
            if f.name.trim().is_empty() {
                return Err(FieldError::new(
                    at("name"),
                    "required",
                    "custom field name must not be empty",
                ));
            }
            crate::call::check_text(&at("name"), &f.name, MAX_NAME_LEN)?;
            if !seen.insert(f.name.as_str()) {
                return Err(FieldError::new(
                    at("name"),
                    "duplicate",
                    format!("custom field name {:?} is used twice", f.name),
                ));
            }
            crate::call::check_text(&at("value"), &f.value, MAX_VALUE_LEN)?;
            for name in placeholders(&f.value) {
                if !placeholder_fields().any(|f| f == name) {
                    return Err(FieldError::new(
                        at("value"),
                        "unknown_placeholder",
                        format!(
                            "{{{name}}} is not a payload field; use one of {}",
                            placeholder_fields().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(Self(fields))
    }

    /// Wraps fields read back from the database, where only parsed ones are written.
    pub fn from_trusted(fields: Vec<CustomField>) -> Self {
        Self(fields)
    }

    /// The most bytes the `custom_fields` object can take in a body, every
    /// placeholder at its longest value ([`crate::weight::longest_text`],
    /// one byte a character: the shortest such value).
    pub fn longest_bytes(&self) -> usize {
        self.0
            .iter()
            .map(|f| {
                let literal: usize = Segments { rest: &f.value }
                    .map(|s| match s {
                        Segment::Text(t) => t.len(),
                        Segment::Placeholder(name) => crate::weight::longest_text(name),
                    })
                    .sum();
                // "name":"value",
                f.name.len() + literal + 6
            })
            .sum::<usize>()
            + 2
    }

    pub fn as_slice(&self) -> &[CustomField] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The placeholder names in a value: `{name}` where name is ASCII letters,
/// digits and `_`. Other braces are literal text.
pub fn placeholders(value: &str) -> impl Iterator<Item = &str> {
    Segments { rest: value }.filter_map(|s| match s {
        Segment::Placeholder(name) => Some(name),
        Segment::Text(_) => None,
    })
}

/// Replaces each `{name}` with `lookup(name)`; a placeholder whose value is
/// unknown (`None`) becomes empty text.
pub fn expand<'a, F>(value: &'a str, mut lookup: F) -> Cow<'a, str>
where
    F: FnMut(&str) -> Option<String>,
{
    if placeholders(value).next().is_none() {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    for segment in (Segments { rest: value }) {
        match segment {
            Segment::Text(t) => out.push_str(t),
            Segment::Placeholder(name) => out.push_str(lookup(name).as_deref().unwrap_or("")),
        }
    }
    Cow::Owned(out)
}

enum Segment<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

struct Segments<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Segments<'a> {
    type Item = Segment<'a>;

    fn next(&mut self) -> Option<Segment<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let bytes = self.rest.as_bytes();
        let mut search_from = 0;
        while let Some(open) = self.rest[search_from..].find('{').map(|i| i + search_from) {
            let name_len = bytes[open + 1..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            let close = open + 1 + name_len;
            if name_len > 0 && bytes.get(close) == Some(&b'}') {
                if open > 0 {
                    let text = &self.rest[..open];
                    self.rest = &self.rest[open..];
                    return Some(Segment::Text(text));
                }
                let name = &self.rest[1..close];
                self.rest = &self.rest[close + 1..];
                return Some(Segment::Placeholder(name));
            }
            search_from = open + 1;
        }
        let text = self.rest;
        self.rest = "";
        Some(Segment::Text(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field(name: &str, value: &str) -> CustomField {
        CustomField {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn expands_known_placeholders_and_keeps_other_braces() {
        let out = expand("{utm_source}/{caller} {not closed {} {{x}}", |n| match n {
            "utm_source" => Some("vk".into()),
            "caller" => Some("7999".into()),
            "x" => None,
            _ => panic!("unexpected {n}"),
        });
        assert_eq!(out, "vk/7999 {not closed {} {}");
    }

    #[test]
    fn validation_names_the_field() {
        let err = CustomFields::parse(vec![field("a", "1"), field("a", "2")]).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.code),
            ("custom_fields[1].name", "duplicate")
        );
        let err = CustomFields::parse(vec![field(" ", "1")]).unwrap_err();
        assert_eq!(err.field, "custom_fields[0].name");
        let err = CustomFields::parse(vec![field("a", "{nope}")]).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.code),
            ("custom_fields[0].value", "unknown_placeholder")
        );
        let err = CustomFields::parse(vec![field("a", &"x".repeat(1025))]).unwrap_err();
        assert_eq!(err.code, "too_long");
        let many = (0..51).map(|i| field(&i.to_string(), "")).collect();
        assert_eq!(CustomFields::parse(many).unwrap_err().code, "too_many");
        assert!(CustomFields::parse(vec![field("src", "{utm_source}-{status}")]).is_ok());
    }

    proptest! {
        #[test]
        fn text_without_placeholders_is_unchanged(s in "[^{}]*") {
            prop_assert_eq!(expand(&s, |_| Some("X".into())), s.as_str());
        }

        #[test]
        fn expansion_replaces_every_placeholder(
            parts in proptest::collection::vec(("[a-z ]{0,5}", "[a-z_]{1,8}"), 0..6),
            tail in "[a-z ]{0,5}",
        ) {
            let mut input = String::new();
            let mut expected = String::new();
            for (text, name) in &parts {
                input.push_str(text);
                input.push('{');
                input.push_str(name);
                input.push('}');
                expected.push_str(text);
                expected.push_str(&name.to_uppercase());
            }
            input.push_str(&tail);
            expected.push_str(&tail);
            let names: Vec<_> = placeholders(&input).map(str::to_owned).collect();
            prop_assert_eq!(names, parts.iter().map(|p| p.1.clone()).collect::<Vec<_>>());
            prop_assert_eq!(expand(&input, |n| Some(n.to_uppercase())), expected);
        }

        #[test]
        fn expansion_never_panics(s in ".*") {
            let _ = expand(&s, |_| None);
        }
    }
}
