//! The webhook body, byte for byte as the product page promises: every key of
//! its example in its order, always present (`null` when unknown), strings
//! and numbers as the page types them, UTF-8 without `\u` escapes.

use std::borrow::Cow;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::custom_fields::expand;
use crate::{Call, CustomFields, DeliveryKind, Timezone};

/// The during-call payload's keys, in the page's order.
pub const DURING_CALL_FIELDS: &[&str] = &[
    "id",
    "caller",
    "callee",
    "visit_id",
    "marker",
    "order_id",
    "date",
    "google_client_id",
    "custom_fields",
    "landing_page",
    "domain",
    "city",
    "country",
    "ip",
    "first_visit",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "roistat_param_1",
    "roistat_param_2",
    "roistat_param_3",
    "roistat_param_4",
    "roistat_param_5",
    "metrika_client_id",
    "source_level_1",
    "source_level_2",
];

/// What the after-call payload appends, in the page's order.
pub const AFTER_CALL_EXTRA_FIELDS: &[&str] = &["status", "file_id", "duration", "link"];

/// Names a custom field value may use as `{placeholder}`: every payload key
/// but `custom_fields` itself.
pub fn placeholder_fields() -> impl Iterator<Item = &'static str> + Clone {
    DURING_CALL_FIELDS
        .iter()
        .chain(AFTER_CALL_EXTRA_FIELDS)
        .copied()
        .filter(|name| *name != "custom_fields")
}

/// The product page's example call (`313`, `79990009911` → `78005552233`,
/// 2019-02-19 00:00:00 in `tz`, the page's visit fields); with `end`, the
/// page's after-call values (`ANSWER`, 20 s, an empty link).
pub fn example_call(tz: Timezone, end: bool, ended_at: chrono::DateTime<chrono::Utc>) -> Call {
    use crate::{CallEnd, CallStatus, PhoneNumber, Visit};
    Call {
        id: "313".into(),
        caller: PhoneNumber::from_trusted("79990009911".into()),
        callee: PhoneNumber::from_trusted("78005552233".into()),
        date: tz
            .parse_date("2019-02-19 00:00:00", "date")
            .expect("the example date exists in every zone"),
        visit: Visit {
            visit_id: Some("123456".into()),
            marker: Some("vk_new".into()),
            order_id: Some(123_456_789),
            google_client_id: Some("111111111.1111111111".into()),
            landing_page: Some("test.com/new".into()),
            domain: Some("test.com".into()),
            city: Some("Москва".into()),
            country: Some("Россия".into()),
            ip: Some("100.100.1.1".into()),
            first_visit: Some("1001".into()),
            referrer: Some("vk.com".into()),
            source_level_1: Some("vk".into()),
            source_level_2: Some("new".into()),
            ..Visit::default()
        },
        end: end.then(|| CallEnd {
            status: CallStatus::Answer,
            duration: 20,
            file_id: None,
            link: Some(String::new()),
            ended_at,
        }),
    }
}

/// Builds the exact body of a call's webhook of `kind`. Custom field values
/// have their `{placeholders}` filled from the same call (unknown → empty).
pub fn build_payload(
    call: &Call,
    kind: DeliveryKind,
    custom_fields: &CustomFields,
    tz: Timezone,
) -> Vec<u8> {
    let payload = Payload {
        call,
        kind,
        custom_fields,
        tz,
    };
    let mut out = Vec::with_capacity(1024);
    payload
        .serialize(&mut serde_json::Serializer::new(&mut out))
        .expect("serialising strings and integers into a Vec cannot fail");
    out
}

/// [`build_payload`] bounded: `None` as soon as the body would pass `max`
/// bytes, having held at most `max` of it.
pub fn build_payload_within(
    call: &Call,
    kind: DeliveryKind,
    custom_fields: &CustomFields,
    tz: Timezone,
    max: usize,
) -> Option<Vec<u8>> {
    let payload = Payload {
        call,
        kind,
        custom_fields,
        tz,
    };
    let mut out = crate::weight::Bounded {
        bytes: Vec::with_capacity(1024.min(max)),
        max,
    };
    serde_json::to_writer(&mut out, &payload).ok()?;
    Some(out.bytes)
}

/// The value of one payload field of a call, as text (for placeholders).
pub fn field_text(call: &Call, tz: Timezone, name: &str) -> Option<String> {
    match field_value(call, tz, name)? {
        FieldValue::Str(s) => s.map(Cow::into_owned),
        FieldValue::Int(i) => i.map(|i| i.to_string()),
    }
}

pub(crate) enum FieldValue<'a> {
    Str(Option<Cow<'a, str>>),
    Int(Option<i64>),
}

/// `None` for `custom_fields` and for names that are not payload fields.
pub(crate) fn field_value<'a>(call: &'a Call, tz: Timezone, name: &str) -> Option<FieldValue<'a>> {
    let end = call.end.as_ref();
    let borrowed = |s: Option<&'a str>| FieldValue::Str(s.map(Cow::Borrowed));
    Some(match name {
        "id" => borrowed(Some(&call.id)),
        "caller" => borrowed(Some(call.caller.as_str())),
        "callee" => borrowed(Some(call.callee.as_str())),
        "order_id" => FieldValue::Int(call.visit.order_id),
        "date" => FieldValue::Str(Some(Cow::Owned(tz.format_payload_date(call.date)))),
        "status" => borrowed(end.map(|e| e.status.as_str())),
        "file_id" => borrowed(end.and_then(|e| e.file_id.as_deref())),
        "duration" => FieldValue::Int(end.map(|e| e.duration)),
        "link" => borrowed(end.and_then(|e| e.link.as_deref())),
        other => borrowed(call.visit.string_field(other)?),
    })
}

struct Payload<'a> {
    call: &'a Call,
    kind: DeliveryKind,
    custom_fields: &'a CustomFields,
    tz: Timezone,
}

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let extra: &[&str] = match self.kind {
            // Operator events have a body of their own (`health`), never this one.
            DeliveryKind::DuringCall | DeliveryKind::OperatorEvent => &[],
            DeliveryKind::AfterCall => AFTER_CALL_EXTRA_FIELDS,
        };
        let mut map = serializer.serialize_map(Some(DURING_CALL_FIELDS.len() + extra.len()))?;
        for &name in DURING_CALL_FIELDS.iter().chain(extra) {
            if name == "custom_fields" {
                map.serialize_entry(name, &CustomFieldsOut(self))?;
                continue;
            }
            match field_value(self.call, self.tz, name)
                .expect("every listed name is a payload field")
            {
                FieldValue::Str(s) => map.serialize_entry(name, &s)?,
                FieldValue::Int(i) => map.serialize_entry(name, &i)?,
            }
        }
        map.end()
    }
}

/// `[]` when the scenario has no custom fields (what the platform sends), an
/// object of name → expanded value otherwise. A PHP receiver reads both as an array.
struct CustomFieldsOut<'a>(&'a Payload<'a>);

impl Serialize for CustomFieldsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let fields = p.custom_fields.as_slice();
        if fields.is_empty() {
            return serializer.collect_seq(std::iter::empty::<()>());
        }
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for f in fields {
            let value = expand(&f.value, |name| field_text(p.call, p.tz, name));
            map.serialize_entry(&f.name, &value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_body_is_the_same_body_or_none_past_the_limit() {
        let call = example_call(Timezone::default(), true, chrono::Utc::now());
        let fields = CustomFields::parse(vec![crate::CustomField {
            name: "c".into(),
            value: "{city}".repeat(100),
        }])
        .unwrap();
        let whole = build_payload(&call, DeliveryKind::AfterCall, &fields, Timezone::default());
        let within = |max| {
            build_payload_within(
                &call,
                DeliveryKind::AfterCall,
                &fields,
                Timezone::default(),
                max,
            )
        };
        assert_eq!(within(whole.len()).as_deref(), Some(whole.as_slice()));
        assert_eq!(within(whole.len() - 1), None);
    }

    #[test]
    fn the_longest_custom_fields_count_each_placeholder_at_its_longest() {
        let fields = |value: &str| {
            CustomFields::parse(vec![crate::CustomField {
                name: "n".into(),
                value: value.into(),
            }])
            .unwrap()
        };
        // "n":"…", and the braces
        assert_eq!(fields("abc").longest_bytes(), 1 + 3 + 6 + 2);
        assert_eq!(fields("{city}").longest_bytes(), 1 + 2048 + 6 + 2);
        assert_eq!(fields("{duration}s").longest_bytes(), 1 + 20 + 1 + 6 + 2);
        // It bounds what a call can make of them.
        let mut call = example_call(Timezone::default(), true, chrono::Utc::now());
        call.visit.city = Some("x".repeat(2048));
        let f = fields("{city}{duration}{id}");
        let body = build_payload(&call, DeliveryKind::AfterCall, &f, Timezone::default());
        let empty = build_payload(
            &call,
            DeliveryKind::AfterCall,
            &CustomFields::default(),
            Timezone::default(),
        );
        assert!(body.len() - empty.len() <= f.longest_bytes());
    }
    use crate::{CallEnd, CallStatus, CustomField, PhoneNumber, Visit};
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn call() -> Call {
        Call {
            id: "313".into(),
            caller: PhoneNumber::parse("79990009911", "caller").unwrap(),
            callee: PhoneNumber::parse("78005552233", "callee").unwrap(),
            date: Utc.with_ymd_and_hms(2019, 2, 18, 21, 0, 0).unwrap(),
            visit: Visit {
                city: Some("Москва".into()),
                utm_source: Some("vk".into()),
                ..Visit::default()
            },
            end: None,
        }
    }

    fn keys(body: &[u8]) -> Vec<String> {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).unwrap();
        v.keys().cloned().collect()
    }

    #[test]
    fn non_ascii_is_raw_utf8_and_custom_fields_empty_is_array() {
        let body = build_payload(
            &call(),
            DeliveryKind::DuringCall,
            &CustomFields::default(),
            Timezone::default(),
        );
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("\"city\":\"Москва\""), "{text}");
        assert!(text.contains("\"custom_fields\":[]"), "{text}");
        assert!(text.contains("\"date\":\"2019-02-19 00:00:00\""), "{text}");
    }

    #[test]
    fn custom_fields_are_an_object_in_order_with_placeholders_filled() {
        let fields = CustomFields::parse(vec![
            CustomField {
                name: "z".into(),
                value: "{utm_source}:{utm_medium}".into(),
            },
            CustomField {
                name: "a".into(),
                value: "{status}/{duration}".into(),
            },
        ])
        .unwrap();
        let mut c = call();
        c.end = Some(CallEnd {
            status: CallStatus::Answer,
            duration: 20,
            file_id: None,
            link: None,
            ended_at: c.date,
        });
        let body = build_payload(&c, DeliveryKind::AfterCall, &fields, Timezone::default());
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains(r#""custom_fields":{"z":"vk:","a":"ANSWER/20"}"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""status":"ANSWER","file_id":null,"duration":20,"link":null}"#),
            "{text}"
        );
    }

    proptest! {
        #[test]
        fn any_call_gives_json_with_every_key_in_order(
            id in "[ -~]{1,20}",
            city in proptest::option::of("\\PC{0,20}"),
            order_id in proptest::option::of(any::<i64>()),
            duration in 0i64..1_000_000,
            after in any::<bool>(),
            secs in 0i64..4_000_000_000,
        ) {
            let mut c = call();
            c.id = id;
            c.visit.city = city;
            c.visit.order_id = order_id;
            c.date = Utc.timestamp_opt(secs, 0).unwrap();
            let kind = if after { DeliveryKind::AfterCall } else { DeliveryKind::DuringCall };
            if after {
                c.end = Some(CallEnd { status: CallStatus::Busy, duration, file_id: None, link: Some("l".into()), ended_at: c.date });
            }
            let body = build_payload(&c, kind, &CustomFields::default(), Timezone::default());
            let expected: Vec<_> = DURING_CALL_FIELDS.iter().chain(if after { AFTER_CALL_EXTRA_FIELDS } else { &[] }).map(|s| s.to_string()).collect();
            prop_assert_eq!(keys(&body), expected);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            prop_assert_eq!(v["id"].as_str(), Some(c.id.as_str()));
            prop_assert_eq!(v["order_id"].as_i64(), order_id);
        }
    }
}
