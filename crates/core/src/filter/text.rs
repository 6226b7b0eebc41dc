//! A condition as a person types it in a form: the field and operator
//! picked, the value as text, read as the field's type. The checks stay
//! [`Filter::parse`]'s: text that does not read as the field's type is kept
//! as text, so the check refuses it naming the condition's value.

use serde_json::Value;

use super::{Condition, Kind, Op};

impl Condition {
    /// The condition a form's row says: `value` read as `field`'s type (a
    /// number for `order_id` and `duration`, `true`/`false` for
    /// `first_call`, else text, trimmed); for `in` and `not_in` a list, one
    /// value a line or, on one line, separated by commas; none for `present`
    /// and `absent`, or when blank.
    pub fn from_text(field: &str, op: &str, value: &str) -> Self {
        let (field, op) = (field.trim(), op.trim());
        let kind = Kind::of(field);
        let value = match op.parse::<Op>() {
            Ok(Op::Present | Op::Absent) => Value::Null,
            Ok(Op::In | Op::NotIn) => {
                let items: Vec<Value> = if value.contains('\n') {
                    value.lines().map(|i| typed(kind, i)).collect()
                } else {
                    value.split(',').map(|i| typed(kind, i)).collect()
                };
                let items: Vec<Value> = items.into_iter().filter(|v| !v.is_null()).collect();
                if items.is_empty() {
                    Value::Null
                } else {
                    Value::Array(items)
                }
            }
            _ => typed(kind, value),
        };
        Self {
            field: field.to_owned(),
            op: op.to_owned(),
            value,
        }
    }

    /// Its value as a form's row shows it: [`Condition::from_text`] reads
    /// it back (a list's values separated by commas), unless a value holds
    /// a comma or a line break or spaces at either end; then it does not
    /// (the form shows such conditions as they are, not as rows).
    pub fn value_text(&self) -> String {
        fn one(v: &Value) -> String {
            match v {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        }
        match &self.value {
            Value::Array(items) => items.iter().map(one).collect::<Vec<_>>().join(", "),
            v => one(v),
        }
    }

    /// Whether a form's row gives it back exactly.
    pub fn fits_a_row(&self) -> bool {
        Self::from_text(&self.field, &self.op, &self.value_text()) == *self
    }
}

/// `text`, trimmed, as a value of `kind` where it reads as one; blank is
/// none.
fn typed(kind: Option<Kind>, text: &str) -> Value {
    let text = text.trim();
    if text.is_empty() {
        return Value::Null;
    }
    match kind {
        Some(Kind::Number) => text.parse::<i64>().map(Value::from).ok(),
        Some(Kind::Truth) => text.parse::<bool>().map(Value::Bool).ok(),
        Some(Kind::Text) | None => None,
    }
    .unwrap_or_else(|| Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{EndpointKind, Filter};

    fn row(field: &str, op: &str, value: &str) -> Value {
        serde_json::to_value(Condition::from_text(field, op, value)).unwrap()
    }

    #[test]
    fn a_rows_text_reads_as_the_fields_type() {
        assert_eq!(
            row("duration", "gte", " 10 "),
            json!({"field": "duration", "op": "gte", "value": 10})
        );
        assert_eq!(
            row("status", "in", "ANSWER, BUSY"),
            json!({"field": "status", "op": "in", "value": ["ANSWER", "BUSY"]})
        );
        assert_eq!(
            row("callee", "not_in", "78005552233\n78005552234\n"),
            json!({"field": "callee", "op": "not_in", "value": ["78005552233", "78005552234"]}),
            "one a line; a number on a text field stays text"
        );
        assert_eq!(
            row("first_call", "eq", "true"),
            json!({"field": "first_call", "op": "eq", "value": true})
        );
        assert_eq!(
            row("marker", "present", "ignored"),
            json!({"field": "marker", "op": "present"})
        );
        assert_eq!(
            row("marker", "eq", "  "),
            json!({"field": "marker", "op": "eq"})
        );
    }

    #[test]
    fn text_of_the_wrong_type_is_refused_by_the_check_at_the_value() {
        let c = Condition::from_text("duration", "gte", "ten");
        assert_eq!(c.value, json!("ten"));
        let e = Filter::parse(vec![c], EndpointKind::AfterCall).unwrap_err();
        assert_eq!(e.field, "after_call_filter[0].value");
        let e = Filter::parse(
            vec![Condition::from_text("duration", "in", "")],
            EndpointKind::AfterCall,
        )
        .unwrap_err();
        assert_eq!(e.field, "after_call_filter[0].value", "an empty list");
    }

    #[test]
    fn rows_give_back_what_they_show_unless_a_value_cannot_be_written_so() {
        for c in [
            json!({"field": "duration", "op": "gte", "value": 10}),
            json!({"field": "status", "op": "in", "value": ["ANSWER", "BUSY"]}),
            json!({"field": "order_id", "op": "not_in", "value": [1, 2]}),
            json!({"field": "first_call", "op": "eq", "value": false}),
            json!({"field": "utm_source", "op": "absent"}),
            json!({"field": "marker", "op": "prefix", "value": "vk"}),
        ] {
            let c: Condition = serde_json::from_value(c).unwrap();
            assert!(c.fits_a_row(), "{c:?} as {:?}", c.value_text());
        }
        for c in [
            json!({"field": "utm_campaign", "op": "in", "value": ["a,b"]}),
            json!({"field": "marker", "op": "eq", "value": " vk"}),
            json!({"field": "marker", "op": "eq", "value": ""}),
        ] {
            let c: Condition = serde_json::from_value(c).unwrap();
            assert!(!c.fits_a_row(), "{c:?}");
        }
    }
}
