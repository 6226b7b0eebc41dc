//! The conditions' rules, case by case.

use serde_json::json;

use super::*;
use crate::payload::example_call;

fn conditions(v: Value) -> Vec<Condition> {
    serde_json::from_value(v).unwrap()
}

fn call(status: &str, duration: i64) -> Call {
    let mut c = example_call(Timezone::default(), true, chrono::Utc::now());
    let end = c.end.as_mut().unwrap();
    end.status = crate::CallStatus::parse(status, "status").unwrap();
    end.duration = duration;
    c
}

#[test]
fn answered_calls_over_ten_seconds() {
    let f = Filter::parse(
        conditions(json!([{"field": "status", "op": "in", "value": ["ANSWER"]},
                          {"field": "duration", "op": "gte", "value": 10}])),
        EndpointKind::AfterCall,
    )
    .unwrap();
    let tz = Timezone::default();
    assert_eq!(f.first_failing(&call("ANSWER", 20), tz, false), None);
    assert_eq!(
        f.first_failing(&call("ANSWER", 5), tz, false)
            .unwrap()
            .field,
        "duration"
    );
    assert_eq!(
        f.first_failing(&call("BUSY", 30), tz, false).unwrap().field,
        "status"
    );
}

#[test]
fn each_op_holds_where_it_should() {
    let c = call("ANSWER", 20); // marker vk_new, city Москва, no utm_source
    let tz = Timezone::default();
    let holds = |cond: Value, first: bool| {
        let f = Filter::parse(conditions(json!([cond])), EndpointKind::AfterCall).unwrap();
        f.first_failing(&c, tz, first).is_none()
    };
    assert!(holds(
        json!({"field": "marker", "op": "eq", "value": "vk_new"}),
        false
    ));
    assert!(!holds(
        json!({"field": "marker", "op": "eq", "value": "vk"}),
        false
    ));
    assert!(holds(
        json!({"field": "marker", "op": "ne", "value": "vk"}),
        false
    ));
    assert!(holds(
        json!({"field": "utm_source", "op": "ne", "value": "vk"}),
        false
    ));
    assert!(holds(
        json!({"field": "callee", "op": "in", "value": ["78005552233", "1"]}),
        false
    ));
    assert!(!holds(
        json!({"field": "callee", "op": "not_in", "value": ["78005552233"]}),
        false
    ));
    assert!(holds(
        json!({"field": "utm_source", "op": "not_in", "value": ["vk"]}),
        false
    ));
    assert!(holds(
        json!({"field": "marker", "op": "prefix", "value": "vk_"}),
        false
    ));
    assert!(!holds(
        json!({"field": "utm_source", "op": "prefix", "value": ""}),
        false
    ));
    assert!(holds(
        json!({"field": "duration", "op": "lte", "value": 20}),
        false
    ));
    assert!(!holds(
        json!({"field": "duration", "op": "lte", "value": 19}),
        false
    ));
    assert!(holds(
        json!({"field": "order_id", "op": "gte", "value": 1}),
        false
    ));
    assert!(holds(json!({"field": "city", "op": "present"}), false));
    assert!(holds(json!({"field": "utm_source", "op": "absent"}), false));
    assert!(!holds(
        json!({"field": "utm_source", "op": "present"}),
        false
    ));
    assert!(holds(
        json!({"field": "first_call", "op": "eq", "value": true}),
        true
    ));
    assert!(!holds(
        json!({"field": "first_call", "op": "eq", "value": true}),
        false
    ));
}

#[test]
fn bad_conditions_are_refused_naming_the_part() {
    let refused = |v: Value, kind| {
        Filter::parse(
            conditions(json!([{"field": "marker", "op": "eq", "value": "x"}, v])),
            kind,
        )
        .unwrap_err()
    };
    let after = EndpointKind::AfterCall;
    let e = refused(
        json!({"field": "duration", "op": "gte", "value": "10"}),
        after,
    );
    assert_eq!(
        (e.field.as_str(), e.code),
        ("after_call_filter[1].value", "invalid_value")
    );
    let e = refused(json!({"field": "nope", "op": "eq", "value": "x"}), after);
    assert_eq!(
        (e.field.as_str(), e.code),
        ("after_call_filter[1].field", "unknown_field")
    );
    let e = refused(
        json!({"field": "marker", "op": "like", "value": "x"}),
        after,
    );
    assert_eq!(e.field, "after_call_filter[1].op");
    let e = refused(
        json!({"field": "status", "op": "eq", "value": "ANSWER"}),
        EndpointKind::DuringCall,
    );
    assert_eq!(
        (e.field.as_str(), e.code),
        ("during_call_filter[1].field", "not_known_at_start")
    );
    for bad in [
        json!({"field": "marker", "op": "in", "value": []}),
        json!({"field": "marker", "op": "in", "value": [1]}),
        json!({"field": "marker", "op": "gte", "value": 1}),
        json!({"field": "duration", "op": "prefix", "value": "1"}),
        json!({"field": "marker", "op": "present", "value": "x"}),
        json!({"field": "first_call", "op": "eq", "value": "yes"}),
    ] {
        assert_eq!(
            refused(bad.clone(), after).field,
            "after_call_filter[1].value",
            "{bad}"
        );
    }
    let e = refused(
        json!({"field": "marker", "op": "eq", "value": "x".repeat(MAX_TEXT + 1)}),
        after,
    );
    assert_eq!(e.code, "too_long");
}

#[test]
fn the_fields_a_condition_may_name_are_the_payloads_and_first_call() {
    let after: Vec<&str> = fields(EndpointKind::AfterCall).collect();
    let during: Vec<&str> = fields(EndpointKind::DuringCall).collect();
    for f in ["caller", "utm_source", "status", "duration", FIRST_CALL] {
        assert!(after.contains(&f), "{f}");
    }
    assert!(!after.contains(&"custom_fields"));
    assert!(during.contains(&"marker") && during.contains(&FIRST_CALL));
    for f in AFTER_CALL_EXTRA_FIELDS {
        assert!(!during.contains(f), "{f} is not known at the start");
    }
    // Every field offered passes the check.
    for (kind, list) in [
        (EndpointKind::AfterCall, &after),
        (EndpointKind::DuringCall, &during),
    ] {
        for f in list {
            let c = Condition {
                field: (*f).into(),
                op: "present".into(),
                value: Value::Null,
            };
            assert!(Filter::parse(vec![c], kind).is_ok(), "{f}");
        }
    }
}
