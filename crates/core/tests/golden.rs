//! The product page's example call must produce the page's example bodies:
//! same keys, same order, same types, same values, and the same bytes once
//! the example is written compactly.

use callhook_core::{build_payload, Call, CustomFields, DeliveryKind, Timezone};
use chrono::Utc;
use serde_json::Value;

fn golden(name: &str) -> Value {
    let path = format!("{}/../../tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file"))
        .expect("golden JSON")
}

fn page_call() -> Call {
    callhook_core::payload::example_call(Timezone::default(), false, Utc::now())
}

fn assert_same(body: &[u8], expected: &Value) {
    let got: Value = serde_json::from_slice(body).expect("payload is JSON");
    let got_keys: Vec<_> = got.as_object().unwrap().keys().collect();
    let want_keys: Vec<_> = expected.as_object().unwrap().keys().collect();
    assert_eq!(got_keys, want_keys, "key order");
    for (k, want) in expected.as_object().unwrap() {
        assert_eq!(&got[k], want, "value of {k}");
    }
    assert_eq!(
        std::str::from_utf8(body).unwrap(),
        serde_json::to_string(expected).unwrap(),
        "exact bytes"
    );
}

#[test]
fn during_call_payload_matches_the_page() {
    let body = build_payload(
        &page_call(),
        DeliveryKind::DuringCall,
        &CustomFields::default(),
        Timezone::default(),
    );
    assert_same(&body, &golden("page_during_call.json"));
}

#[test]
fn after_call_payload_matches_the_page() {
    let call = callhook_core::payload::example_call(Timezone::default(), true, Utc::now());
    let body = build_payload(
        &call,
        DeliveryKind::AfterCall,
        &CustomFields::default(),
        Timezone::default(),
    );
    assert_same(&body, &golden("page_after_call.json"));
}
