use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{FieldError, PhoneNumber};

/// Longest string accepted in any visit field (a landing page URL is the longest).
pub const MAX_FIELD_LEN: usize = 2048;
/// Longest call id accepted from the telephony side.
pub const MAX_CALL_ID_LEN: usize = 128;

/// A call's status, the product page's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    Active,
    Answer,
    Busy,
    NoAnswer,
    Cancel,
    Congestion,
    ChanUnavail,
    DontCall,
    Torture,
}

impl CallStatus {
    pub const ALL: [CallStatus; 9] = [
        Self::Active,
        Self::Answer,
        Self::Busy,
        Self::NoAnswer,
        Self::Cancel,
        Self::Congestion,
        Self::ChanUnavail,
        Self::DontCall,
        Self::Torture,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Answer => "ANSWER",
            Self::Busy => "BUSY",
            Self::NoAnswer => "NOANSWER",
            Self::Cancel => "CANCEL",
            Self::Congestion => "CONGESTION",
            Self::ChanUnavail => "CHANUNAVAIL",
            Self::DontCall => "DONTCALL",
            Self::Torture => "TORTURE",
        }
    }

    /// Accepts the nine values, and the product page's misspelling `ACRIVE`
    /// as `ACTIVE`.
    pub fn parse(s: &str, field: &str) -> Result<Self, FieldError> {
        if s == "ACRIVE" {
            return Ok(Self::Active);
        }
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    "invalid_status",
                    format!(
                        "status must be one of {}",
                        Self::ALL.map(Self::as_str).join(", ")
                    ),
                )
            })
    }
}

impl Serialize for CallStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

macro_rules! visit_fields {
    ($($name:ident),* $(,)?) => {
        /// What the platform knows of the website visit behind a call. Every
        /// field is optional; the payload carries `null` for what is unknown.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Visit {
            $(pub $name: Option<String>,)*
            /// The deal's id in the customer's CRM: a number in the payload.
            pub order_id: Option<i64>,
        }

        impl Visit {
            /// The JSON names of the string fields, in declaration order.
            pub const STRING_FIELDS: &'static [&'static str] = &[$(stringify!($name)),*];

            /// The value of a string field by its JSON name; `None` for a
            /// name that is not a visit string field.
            pub fn string_field(&self, name: &str) -> Option<Option<&str>> {
                match name {
                    $(stringify!($name) => Some(self.$name.as_deref()),)*
                    _ => None,
                }
            }

            fn string_field_mut(&mut self, name: &str) -> Option<&mut Option<String>> {
                match name {
                    $(stringify!($name) => Some(&mut self.$name),)*
                    _ => None,
                }
            }

            /// Each field of `self`, or `fallback`'s where `self` has none.
            pub fn or(self, fallback: Visit) -> Visit {
                Visit {
                    $($name: self.$name.or(fallback.$name),)*
                    order_id: self.order_id.or(fallback.order_id),
                }
            }

            /// True when no field is known.
            pub fn is_empty(&self) -> bool {
                $(self.$name.is_none() &&)* self.order_id.is_none()
            }
        }
    };
}

visit_fields!(
    visit_id,
    marker,
    google_client_id,
    landing_page,
    domain,
    city,
    country,
    ip,
    first_visit,
    referrer,
    utm_source,
    utm_medium,
    utm_campaign,
    utm_term,
    utm_content,
    roistat_param_1,
    roistat_param_2,
    roistat_param_3,
    roistat_param_4,
    roistat_param_5,
    metrika_client_id,
    source_level_1,
    source_level_2,
);

impl Visit {
    /// True for the JSON name of any visit field (`order_id` included).
    pub fn is_field(name: &str) -> bool {
        name == "order_id" || Self::STRING_FIELDS.contains(&name)
    }

    /// Takes the visit fields out of a JSON object, checking each: strings
    /// (or `null`) of at most [`MAX_FIELD_LEN`] characters, `ip` an IPv4 or
    /// IPv6 address, `order_id` an integer. Keys that are not visit fields are
    /// left for the caller.
    pub fn from_json(object: &Map<String, Value>) -> Result<Visit, FieldError> {
        let mut visit = Visit::default();
        for (key, value) in object {
            if key == "order_id" {
                visit.order_id = match value {
                    Value::Null => None,
                    Value::Number(n) => Some(n.as_i64().ok_or_else(|| {
                        FieldError::new(key, "invalid_type", "order_id must be an integer")
                    })?),
                    _ => {
                        return Err(FieldError::new(
                            key,
                            "invalid_type",
                            "order_id must be an integer",
                        ))
                    }
                };
                continue;
            }
            let Some(slot) = visit.string_field_mut(key) else {
                continue;
            };
            *slot = match value {
                Value::Null => None,
                Value::String(s) => Some(check_text(key, s, MAX_FIELD_LEN)?.to_owned()),
                _ => {
                    return Err(FieldError::new(
                        key.as_str(),
                        "invalid_type",
                        format!("{key} must be a string or null"),
                    ))
                }
            };
        }
        if let Some(ip) = &visit.ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(FieldError::new(
                    "ip",
                    "invalid_ip",
                    format!("{ip:?} is not an IPv4 or IPv6 address"),
                ));
            }
        }
        Ok(visit)
    }
}

/// Checks a free-text input: at most `max` characters, no control characters
/// other than tab and newline.
pub fn check_text<'a>(field: &str, s: &'a str, max: usize) -> Result<&'a str, FieldError> {
    if s.chars().count() > max {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("{field} must be at most {max} characters"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\t' && c != '\n') {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(s)
}

/// Checks the telephony side's call id: 1 to 128 printable characters.
pub fn parse_call_id(s: &str, field: &str) -> Result<String, FieldError> {
    if s.is_empty() || s.trim() != s {
        return Err(FieldError::new(
            field,
            "invalid_call_id",
            "call id must be non-empty and carry no surrounding spaces",
        ));
    }
    check_text(field, s, MAX_CALL_ID_LEN)?;
    if s.contains(['/', '\n', '\t']) {
        return Err(FieldError::new(
            field,
            "invalid_call_id",
            "call id must not contain '/' or white space other than spaces",
        ));
    }
    Ok(s.to_owned())
}

/// How a call ended, from the telephony side's end event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    pub status: CallStatus,
    /// Seconds.
    pub duration: i64,
    pub file_id: Option<String>,
    /// The recording's address.
    pub link: Option<String>,
    pub ended_at: DateTime<Utc>,
}

/// A call as the payload builder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: String,
    pub caller: PhoneNumber,
    pub callee: PhoneNumber,
    /// The moment of the call.
    pub date: DateTime<Utc>,
    pub visit: Visit,
    pub end: Option<CallEnd>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_accepts_the_page_misspelling() {
        assert_eq!(
            CallStatus::parse("ACRIVE", "status").unwrap(),
            CallStatus::Active
        );
        assert_eq!(
            CallStatus::parse("TORTURE", "status").unwrap().as_str(),
            "TORTURE"
        );
        assert_eq!(
            CallStatus::parse("answer", "status").unwrap_err().field,
            "status"
        );
    }

    #[test]
    fn visit_from_json_checks_types() {
        let obj = json!({"visit_id": "1", "order_id": 5, "ip": "100.100.1.1", "other": 1});
        let v = Visit::from_json(obj.as_object().unwrap()).unwrap();
        assert_eq!(v.visit_id.as_deref(), Some("1"));
        assert_eq!(v.order_id, Some(5));
        let bad = json!({"visit_id": 123456});
        assert_eq!(
            Visit::from_json(bad.as_object().unwrap())
                .unwrap_err()
                .field,
            "visit_id"
        );
        let bad = json!({"order_id": 1.5});
        assert_eq!(
            Visit::from_json(bad.as_object().unwrap())
                .unwrap_err()
                .field,
            "order_id"
        );
        let bad = json!({"ip": "999.1.1.1"});
        assert_eq!(
            Visit::from_json(bad.as_object().unwrap()).unwrap_err().code,
            "invalid_ip"
        );
    }

    #[test]
    fn call_id_rules() {
        assert!(parse_call_id("313", "id").is_ok());
        assert!(parse_call_id("", "id").is_err());
        assert!(parse_call_id("a/b", "id").is_err());
        assert!(parse_call_id(&"x".repeat(129), "id").is_err());
    }
}
