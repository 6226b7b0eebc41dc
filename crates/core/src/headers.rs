//! Headers per webhook: what a customer's CRM needs on every request
//! (`Authorization: Bearer …`, `X-Api-Key`), a scenario's
//! `during_call_headers` and `after_call_headers`.
//!
//! A header is `{"name", "value", "secret"}`. Names are RFC 9110 tokens,
//! at most 64 characters, once each (case-insensitive); the names callhook
//! owns are refused (`Host`, `Content-Length`, `Content-Type`,
//! `Transfer-Encoding`, `Connection`, `User-Agent`, every `webhook-*`).
//! Values hold no CR, LF or NUL and are at most 4,096 bytes; at most 10
//! headers per webhook. A secret value is stored sealed like the signing
//! secret and never answered again: `value` is `null` in answers, and a
//! save that sends `null` for a secret header keeps its stored value.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{EndpointKind, FieldError, OpenError, Sealer};

/// What a secret header's value is shown as wherever a person reads a
/// request (a test send's answer, the console's "copy as curl").
pub const SECRET_SHOWN: &str = "<secret>";

/// At most this many headers per webhook.
pub const MAX_HEADERS: usize = 10;
/// Longest header name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest header value, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;

/// Names callhook sets itself (lower case); every `webhook-*` too.
const OWNED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
];

/// One header of a webhook. `value` is `None` in answers for a secret one,
/// and, in a save, for a secret one whose stored value is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

impl Header {
    /// The field its sealed value is bound to (the seal's associated data
    /// names the scenario and this): `after_call_headers:authorization`.
    pub fn sealed_field(&self, kind: EndpointKind) -> String {
        format!("{}:{}", list_name(kind), self.name.to_ascii_lowercase())
    }

    /// Its value as a person is shown it: a secret's never.
    pub fn value_shown(&self) -> &str {
        if self.secret {
            SECRET_SHOWN
        } else {
            self.value.as_deref().unwrap_or_default()
        }
    }

    /// As answered: a secret's value never is.
    pub fn shown(&self) -> Self {
        Self {
            value: if self.secret {
                None
            } else {
                self.value.clone()
            },
            ..self.clone()
        }
    }
}

/// What a webhook of `kind` sends: each stored header (scenario `owner`'s)
/// as (name, value), a secret value opened with `sealer`. An error names
/// the header whose value does not open (never its value).
pub fn to_send(
    headers: &[Header],
    sealer: &Sealer,
    owner: Uuid,
    kind: EndpointKind,
) -> Result<Vec<(String, String)>, (String, OpenError)> {
    headers
        .iter()
        .map(|h| {
            let stored = h.value.as_deref().unwrap_or_default();
            let value = if h.secret {
                sealer
                    .open_text(stored, owner, &h.sealed_field(kind))
                    .map_err(|e| (h.name.clone(), e))?
            } else {
                stored.to_owned()
            };
            Ok((h.name.clone(), value))
        })
        .collect()
}

/// `during_call_headers` or `after_call_headers`.
pub fn list_name(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::DuringCall => "during_call_headers",
        EndpointKind::AfterCall => "after_call_headers",
    }
}

/// Checks a webhook's headers as a save gives them; an error names the
/// header's part (`after_call_headers[0].name`).
pub fn check(headers: &[Header], kind: EndpointKind) -> Result<(), FieldError> {
    let base = list_name(kind);
    if headers.len() > MAX_HEADERS {
        return Err(FieldError::new(
            base,
            "too_many",
            format!("{base} must have at most {MAX_HEADERS} headers"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, h) in headers.iter().enumerate() {
        let lower = h.name.to_ascii_lowercase();
        if h.name.is_empty() || h.name.len() > MAX_NAME_LEN || !h.name.bytes().all(is_tchar) {
            return Err(FieldError::new(
                format!("{base}[{i}].name"),
                "invalid_header",
                format!("a header name is 1 to {MAX_NAME_LEN} of the characters A-Z a-z 0-9 !#$%&'*+-.^_`|~ (RFC 9110), got {:?}", h.name),
            ));
        }
        if OWNED.contains(&lower.as_str()) || lower.starts_with("webhook-") {
            return Err(FieldError::new(
                format!("{base}[{i}].name"),
                "reserved_header",
                format!("{} is set by callhook itself (Host, Content-Length, Content-Type, Transfer-Encoding, Connection, User-Agent and webhook-* are)", h.name),
            ));
        }
        if !seen.insert(lower) {
            return Err(FieldError::new(
                format!("{base}[{i}].name"),
                "duplicate",
                format!("header {} is listed twice", h.name),
            ));
        }
        match &h.value {
            None if !h.secret => {
                return Err(FieldError::new(
                    format!("{base}[{i}].value"),
                    "required",
                    "a header needs a value (null keeps a secret header's stored value)",
                ));
            }
            None => {}
            Some(v) if v.len() > MAX_VALUE_LEN || v.contains(['\r', '\n', '\0']) => {
                return Err(FieldError::new(
                    format!("{base}[{i}].value"),
                    "invalid_header",
                    format!(
                        "a header value is at most {MAX_VALUE_LEN} bytes, without CR, LF or NUL"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: Option<&str>, secret: bool) -> Header {
        Header {
            name: name.into(),
            value: value.map(Into::into),
            secret,
        }
    }

    #[test]
    fn good_headers_pass_and_secrets_are_never_shown() {
        let list = [
            h("Authorization", Some("Bearer k"), true),
            h("X-Api-Version", Some("2"), false),
            h("X-Key", None, true),
        ];
        assert!(check(&list, EndpointKind::AfterCall).is_ok());
        assert_eq!(list[0].shown().value, None);
        assert_eq!(list[1].shown().value.as_deref(), Some("2"));
        assert_eq!(
            list[0].sealed_field(EndpointKind::AfterCall),
            "after_call_headers:authorization"
        );
    }

    #[test]
    fn bad_headers_are_refused_naming_the_part() {
        let refused = |list: &[Header]| {
            let e = check(list, EndpointKind::DuringCall).unwrap_err();
            (e.field, e.code)
        };
        for owned in [
            "Host",
            "content-type",
            "User-Agent",
            "Webhook-Signature",
            "CONNECTION",
        ] {
            assert_eq!(
                refused(&[h(owned, Some("x"), false)]),
                ("during_call_headers[0].name".into(), "reserved_header"),
                "{owned}"
            );
        }
        assert_eq!(refused(&[h("X Key", Some("x"), false)]).1, "invalid_header");
        assert_eq!(refused(&[h("", Some("x"), false)]).1, "invalid_header");
        assert_eq!(
            refused(&[h("X-A", Some("a\r\nX-B: b"), false)]),
            ("during_call_headers[0].value".into(), "invalid_header")
        );
        assert_eq!(refused(&[h("X-A", None, false)]).1, "required");
        assert_eq!(
            refused(&[h("X-A", Some("1"), false), h("x-a", Some("2"), false)]),
            ("during_call_headers[1].name".into(), "duplicate")
        );
        let many: Vec<Header> = (0..=MAX_HEADERS)
            .map(|i| h(&format!("X-{i}"), Some("v"), false))
            .collect();
        assert_eq!(refused(&many).1, "too_many");
    }
}
