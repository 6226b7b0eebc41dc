//! The catalogues are complete: every label non-empty in both languages,
//! every error code the source produces has its Russian sentence.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::errors::ErrorCode;
use super::{Labels, Lang, TimelineLabels};

/// Every label (naming every field: a new label is added here too).
/// Destructures a `Labels` naming every field (a label left out fails to
/// compile) and lists the values in that order.
macro_rules! every_label {
    ($catalogue:ident, $labels:expr; $($field:ident),+ $(,)?) => {{
        let $catalogue { $($field),+ } = $labels;
        vec![$(*$field),+]
    }};
}

fn all(labels: &Labels) -> Vec<&'static str> {
    every_label!(Labels, labels;
        title,
        login,
        token,
        sign_in,
        logout,
        wrong_token,
        scenarios,
        health,
        name,
        add,
        numbers,
        during_call,
        after_call,
        delivered_24h,
        failed_24h,
        last_error,
        no_scenarios,
        state,
        since,
        url,
        waiting,
        due,
        in_flight,
        limits,
        pause,
        enable,
        off,
        healthy,
        failing,
        failed,
        paused,
        disabled,
        language,
        deliveries,
        call_id,
        call,
        kind,
        created,
        attempts,
        filter,
        older,
        pending,
        delivered,
        cancelled,
        operator_event,
        next_attempt,
        status,
        response,
        resend,
        copy_curl,
        new_scenario,
        pool,
        test_send,
        placeholders,
        before_recovery,
        health_legend,
        saved,
        recover_counts,
        next_or_waiting,
        waiting_for_during,
        waiting_for_endpoint,
        form_errors,
        custom_fields_json,
        recover,
        scenario,
        will_resend,
        confirm,
        count_first,
        requeued,
        pool_size,
        reserved_now,
        free_now,
        shared_today,
        number,
        visit,
        until,
        reserved,
        free,
        static_number,
        during_call_url,
        after_call_url,
        custom_fields,
        during_call_filter,
        after_call_filter,
        during_call_headers,
        after_call_headers,
        during_call_grace,
        recording_wait,
        static_numbers,
        timezone,
        save,
        preview,
        signing_secret,
        reveal,
        rotate,
        delete,
        confirm_delete,
        any,
        zone_note,
        live,
        more_new,
        started,
        call_fields,
        signed_request,
        scenario_zone,
        field,
        max_in_flight,
        max_per_second,
        set_limits,
        send_now,
        send_now_hint,
        error,
        no_answer,
        custom_fields_short,
        static_numbers_short,
        item,
        every_call,
        no_headers,
        add_condition,
        add_header,
        remove_row,
        condition_field,
        operator,
        value,
        value_hint,
        header_name,
        secret,
        secret_set,
        conditions_json,
        dry_run,
        dry_run_calls,
        dry_run_ended,
        dry_run_new,
        try_conditions,
        would_send,
        would_filter,
        op_eq,
        op_ne,
        op_in,
        op_not_in,
        op_prefix,
        op_gte,
        op_lte,
        op_present,
        op_absent,
    )
}

#[test]
fn every_label_is_non_empty_in_both_languages() {
    for lang in [Lang::Ru, Lang::En] {
        let labels = all(lang.labels());
        assert!(labels.len() > 100, "{}", labels.len());
        for (i, l) in labels.iter().enumerate() {
            assert!(!l.trim().is_empty(), "{lang:?}: label {i} is empty");
        }
    }
    // Russian is not English left untranslated (the language switch aside,
    // which names the other language, and a few borrowed words).
    let (ru, en) = (all(Lang::Ru.labels()), all(Lang::En.labels()));
    let same: Vec<_> = ru.iter().zip(&en).filter(|(r, e)| r == e).collect();
    assert!(same.is_empty(), "untranslated: {same:?}");
}

#[test]
fn every_error_code_has_a_russian_sentence() {
    for code in ErrorCode::ALL {
        let e = Lang::Ru.error(Some("name"), code.as_str(), "english");
        assert!(!e.text.trim().is_empty(), "{code:?}");
        assert!(
            e.text
                .chars()
                .any(|c| ('а'..='я').contains(&c.to_lowercase().next().unwrap())),
            "{code:?}: {}",
            e.text
        );
        assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
    }
}

#[test]
fn english_pages_keep_the_message_russian_ones_translate_it() {
    let en = Lang::En.error(
        Some("during_call_url"),
        "invalid_url",
        "URL must use http or https",
    );
    assert_eq!(
        (en.text.as_str(), en.label, en.detail),
        ("URL must use http or https", None, None)
    );
    let ru = Lang::Ru.error(
        Some("during_call_url"),
        "invalid_url",
        "URL must use http or https",
    );
    assert!(ru.text.starts_with("Нужен полный адрес"), "{}", ru.text);
    assert_eq!(
        ru.label.as_deref(),
        Some("Адрес для вебхука во время звонка")
    );
    assert_eq!(ru.detail, None);
    // The item a path names, and the English message beside a sentence
    // that cannot name what it names.
    let ru = Lang::Ru.error(
        Some("custom_fields[1].name"),
        "duplicate",
        "custom field name \"a\" is used twice",
    );
    assert_eq!(ru.label.as_deref(), Some("Дополнительные поля, №2"));
    assert_eq!(
        ru.detail.as_deref(),
        Some("custom field name \"a\" is used twice")
    );
    // A code this codebase does not produce: the English message.
    let other = Lang::Ru.error(None, "from_elsewhere", "as it came");
    assert_eq!((other.text.as_str(), other.label), ("as it came", None));
}

/// The workspace's Rust sources (tests aside).
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with(file!()) {
                let text = std::fs::read_to_string(&path).unwrap();
                // A file's own tests (at its end) make errors of their own.
                let text = match text.find("#[cfg(test)]\nmod tests") {
                    Some(at) => text[..at].to_owned(),
                    None => text,
                };
                out.push((path, text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    walk(&root.join("src"), &mut out);
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            walk(&src, &mut out);
        }
    }
    out
}

/// The arguments of the call whose `(` ends `text`'s prefix, up to its `)`.
fn arguments(text: &str) -> Vec<String> {
    let (mut args, mut current, mut depth, mut chars) =
        (Vec::new(), String::new(), 0i32, text.chars());
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                current.push(c);
                while let Some(s) = chars.next() {
                    current.push(s);
                    match s {
                        '\\' => current.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
                continue;
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                args.push(std::mem::take(&mut current).trim().to_owned());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    args.push(current.trim().to_owned());
    args
}

/// The string literals in `text`.
fn literals(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every error code the sources produce: the code argument of each
/// `FieldError::new`, `ApiError::new` and `unprocessable`, and the codes of
/// `text_enum!`'s parse errors.
fn codes_in_source() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for (path, text) in sources() {
        let mut calls = vec!["FieldError::new(", "ApiError::new(", "unprocessable("];
        if path.ends_with("api/src/error.rs") {
            calls.push("Self::new(");
        }
        for call in calls {
            for (at, _) in text.match_indices(call) {
                if text[..at].ends_with("fn ") {
                    continue;
                }
                let args = arguments(&text[at + call.len()..]);
                let code = args.get(1).unwrap_or_else(|| panic!("{path:?}: {call}"));
                match code.as_str() {
                    c if c.starts_with('"') => {
                        codes.extend(literals(c));
                    }
                    // Passed on as they came (an error re-made).
                    "e.code" => {}
                    // `let code = if … { "a" } else { "b" };`: the branches' values.
                    "code" => match text.find("let code =") {
                        Some(from) => {
                            let end = from + text[from..].find(';').unwrap();
                            let branches = text[from..end]
                                .split('{')
                                .filter_map(|b| b.split_once('}'))
                                .map(|(value, _)| value.trim());
                            codes.extend(branches.flat_map(literals));
                        }
                        // A constructor's parameter.
                        None => assert!(path.ends_with("api/src/error.rs"), "{path:?}"),
                    },
                    // `text_enum!`'s: read from its invocations below.
                    "$code" => {}
                    other => panic!("{path:?}: a code this test cannot read: {other}"),
                }
            }
        }
        // `text_enum! { pub enum Name ("field", "code") {`
        for (at, _) in text.match_indices("text_enum! {") {
            let head = &text[at..at + text[at..].find(") {").unwrap()];
            if let Some(code) = literals(head).get(1) {
                codes.insert(code.clone());
            }
        }
    }
    codes
}

#[test]
fn every_code_the_source_produces_is_listed_and_no_other() {
    let found = codes_in_source();
    assert!(
        found.contains("invalid_url") && found.contains("invalid_state"),
        "{found:?}"
    );
    let listed: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    let missing: Vec<_> = found.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "codes with no Russian sentence: {missing:?}"
    );
    let stale: Vec<_> = listed.difference(&found).collect();
    assert!(
        stale.is_empty(),
        "codes listed that the source no longer makes: {stale:?}"
    );
}

/// The call page's timeline, every label named (one left out fails to
/// compile).
fn timeline(labels: &TimelineLabels) -> Vec<&'static str> {
    every_label!(TimelineLabels, labels;
        heading,
        started,
        stored_from_end,
        ended,
        recording,
        recording_joined,
        recording_late,
        created,
        attempt,
        delivered,
        not_sent,
        waits_for_during_call,
        waited_for_during_call,
        held_for_recording,
        expires,
        parked,
        resend_with_recording,
    )
}

#[test]
fn every_timeline_label_is_written_in_both_languages() {
    let (ru, en) = (timeline(Lang::Ru.timeline()), timeline(Lang::En.timeline()));
    for (r, e) in ru.iter().zip(&en) {
        assert!(!r.trim().is_empty() && !e.trim().is_empty());
        assert_ne!(r, e, "a Russian label left in English");
    }
}
