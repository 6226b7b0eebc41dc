//! Rows read from a posted form, edited by the row buttons, shown from a
//! stored scenario; errors at their rows.

use serde_json::json;

use super::*;
use crate::console::scenario_form::text::ScenarioFormData;

fn posted(body: &str) -> ScenarioFormData {
    serde_urlencoded::from_str(body).unwrap()
}

#[test]
fn rows_are_read_by_their_numbers_and_blank_ones_left_out() {
    let form = posted(concat!(
        "csrf=c&name=Main&after_call_filter%5B1%5D.field=duration&after_call_filter%5B1%5D.op=gte",
        "&after_call_filter%5B1%5D.value=10&after_call_filter%5B0%5D.field=status",
        "&after_call_filter%5B0%5D.op=in&after_call_filter%5B0%5D.value=ANSWER%2C+BUSY",
        "&after_call_filter%5B2%5D.field=&after_call_filter%5B2%5D.op=eq&after_call_filter%5B2%5D.value=",
        "&after_call_headers%5B0%5D.name=Authorization&after_call_headers%5B0%5D.value=",
        "&after_call_headers%5B0%5D.secret=on&after_call_headers%5B0%5D.set=1",
        "&after_call_headers%5B1%5D.name=X-Api-Version&after_call_headers%5B1%5D.value=2",
    ));
    assert_eq!(form.name, "Main");
    let (input, unread) = form.input();
    assert!(unread.is_empty());
    assert_eq!(
        serde_json::to_value(input.after_call_filter).unwrap(),
        json!([{"field": "status", "op": "in", "value": ["ANSWER", "BUSY"]},
               {"field": "duration", "op": "gte", "value": 10}])
    );
    assert_eq!(input.during_call_filter, Some(Vec::new()));
    assert_eq!(
        serde_json::to_value(input.after_call_headers).unwrap(),
        json!([{"name": "Authorization", "value": null, "secret": true},
               {"name": "X-Api-Version", "value": "2", "secret": false}])
    );
}

#[test]
fn an_error_is_shown_at_its_row_counting_blank_rows() {
    let form = posted(concat!(
        "after_call_filter%5B0%5D.field=&after_call_filter%5B0%5D.value=",
        "&after_call_filter%5B1%5D.field=status&after_call_filter%5B1%5D.op=eq&after_call_filter%5B1%5D.value=x",
        "&after_call_filter%5B2%5D.field=duration&after_call_filter%5B2%5D.op=gte&after_call_filter%5B2%5D.value=y",
    ));
    let r = &form.rules;
    assert_eq!(
        r.shown_field("after_call_filter[1].value"),
        "after_call_filter[2].value"
    );
    assert_eq!(r.shown_field("after_call_filter"), "after_call_filter");
    assert_eq!(r.shown_field("numbers[1]"), "numbers[1]");
}

#[test]
fn row_buttons_add_and_remove_rows() {
    assert_eq!(
        RowEdit::parse("add:after_call_headers"),
        Some(RowEdit::Add(ScenarioField::AfterCallHeaders))
    );
    assert_eq!(
        RowEdit::parse("remove:during_call_filter[3]"),
        Some(RowEdit::Remove(ScenarioField::DuringCallFilter, 3))
    );
    assert_eq!(RowEdit::parse("add:numbers"), None, "not a list of rows");
    assert_eq!(RowEdit::parse("remove:after_call_filter[x]"), None);
    let mut r = Rules::default();
    r.edit(RowEdit::Add(ScenarioField::AfterCallFilter));
    r.edit(RowEdit::Add(ScenarioField::AfterCallFilter));
    r.edit(RowEdit::Add(ScenarioField::DuringCallHeaders));
    r.edit(RowEdit::Remove(ScenarioField::AfterCallFilter, 0));
    r.edit(RowEdit::Remove(ScenarioField::AfterCallFilter, 7));
    let Conditions::Rows(rows) = r.conditions_of(EndpointKind::AfterCall) else {
        panic!("rows");
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(r.headers_of(EndpointKind::DuringCall).len(), 1);
    assert!(
        r.conditions(EndpointKind::AfterCall).unwrap().is_empty(),
        "blank"
    );
}

#[test]
fn stored_rules_show_as_rows_a_secret_without_its_value() {
    let c: Vec<Condition> = serde_json::from_value(json!([
        {"field": "duration", "op": "gte", "value": 10}
    ]))
    .unwrap();
    let odd: Vec<Condition> = serde_json::from_value(json!([
        {"field": "utm_campaign", "op": "in", "value": ["a,b"]}
    ]))
    .unwrap();
    let h = [Header {
        name: "Authorization".into(),
        value: Some("enc:sealed".into()),
        secret: true,
    }];
    let r = Rules::stored(&odd, &c, &[], &h);
    assert!(matches!(
        r.conditions_of(EndpointKind::DuringCall),
        Conditions::Json(_)
    ));
    assert_eq!(r.conditions(EndpointKind::DuringCall).unwrap(), odd);
    assert_eq!(r.conditions(EndpointKind::AfterCall).unwrap(), c);
    let row = &r.headers_of(EndpointKind::AfterCall)[0];
    assert!(row.set && row.secret && row.value.is_empty());
    assert_eq!(r.headers(EndpointKind::AfterCall)[0].value, None, "kept");
}
