//! The product page's example call must produce the page's example bodies:
//! same keys, same order, same types, same values, and the same bytes once
//! the example is written compactly.

use callhook_core::{
    build_payload, Call, CallEnd, CallStatus, CustomFields, DeliveryKind, PhoneNumber, Timezone,
    Visit,
};
use chrono::Utc;
use serde_json::Value;

fn golden(name: &str) -> Value {
    let path = format!("{}/../../tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file"))
        .expect("golden JSON")
}

fn page_call() -> Call {
    let tz = Timezone::default();
    Call {
        id: "313".into(),
        caller: PhoneNumber::parse("79990009911", "caller").unwrap(),
        callee: PhoneNumber::parse("78005552233", "callee").unwrap(),
        date: tz.parse_date("2019-02-19 00:00:00", "date").unwrap(),
        visit: Visit {
            visit_id: Some("123456".into()),
            marker: Some("vk_new".into()),
            order_id: Some(123456789),
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
        end: None,
    }
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
    let mut call = page_call();
    call.end = Some(CallEnd {
        status: CallStatus::Answer,
        duration: 20,
        file_id: None,
        link: Some(String::new()),
        ended_at: Utc::now(),
    });
    let body = build_payload(
        &call,
        DeliveryKind::AfterCall,
        &CustomFields::default(),
        Timezone::default(),
    );
    assert_same(&body, &golden("page_after_call.json"));
}
