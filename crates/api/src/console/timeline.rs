//! A call's timeline on its page: the start, the end, the recording, each
//! webhook and attempt, and each hold: what holds a pending webhook now
//! (its during-call webhook, its recording, its endpoint, its expiry), and,
//! read from the rows, a wait for the during-call webhook that has ended and
//! whether a recording joined the after-call webhook or came after it.

use callhook_core::{DeliveryKind, DeliveryState, Timezone};
use callhook_store::log::{AttemptRow, DeliveryRow};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::i18n::Lang;

/// One line of the timeline, as shown.
pub(super) struct Moment {
    pub(super) at: String,
    pub(super) what: String,
    pub(super) detail: String,
}

/// A moment of the call row (`started_at`, `ended_at`, `recording_at`).
fn moment(call: &Value, key: &str) -> Option<DateTime<Utc>> {
    let text = call.get(key)?.as_str()?;
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
}

fn text<'a>(call: &'a Value, key: &str) -> &'a str {
    call.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Whether a webhook body carries the call's recording (`link`, `file_id`).
pub(super) fn carries_recording(payload: &str, call: &Value) -> bool {
    let Ok(body) = serde_json::from_str::<Value>(payload) else {
        return false;
    };
    ["link", "file_id"].iter().all(|k| {
        let stored = text(call, k);
        stored.is_empty() || body.get(*k).and_then(Value::as_str) == Some(stored)
    })
}

/// Whether the call has a recording (a `link` or a `file_id`).
pub(super) fn has_recording(call: &Value) -> bool {
    !text(call, "link").is_empty() || !text(call, "file_id").is_empty()
}

/// The call's timeline, oldest first, its moments on the scenario's clock.
pub(super) fn timeline(
    call: &Value,
    rows: &[DeliveryRow],
    attempts: &[AttemptRow],
    zone: Timezone,
    lang: Lang,
) -> Vec<Moment> {
    let t = lang.timeline();
    let l = lang.labels();
    let mut out: Vec<(DateTime<Utc>, String, String)> = Vec::new();
    if let Some(at) = moment(call, "started_at") {
        let estimated = call.get("started_at_estimated") == Some(&Value::Bool(true));
        let what = if estimated {
            t.stored_from_end
        } else {
            t.started
        };
        out.push((at, what.to_owned(), String::new()));
    }
    if let Some(at) = moment(call, "ended_at") {
        let detail = format!(
            "{}, {} s",
            text(call, "status"),
            call.get("duration").unwrap_or(&Value::Null)
        );
        out.push((at, t.ended.to_owned(), detail));
    }
    let first_attempt = |d: &DeliveryRow| {
        attempts
            .iter()
            .filter(|a| a.delivery_id == Some(d.id))
            .map(|a| a.started_at)
            .min()
    };
    let after = rows.iter().find(|d| d.kind == DeliveryKind::AfterCall);
    if let Some(at) = moment(call, "recording_at") {
        let what = [text(call, "link"), text(call, "file_id")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" · ");
        let fate = after.map(|a| match first_attempt(a) {
            Some(first) if first < at => t.recording_late,
            _ if carries_recording(&a.payload, call) => t.recording_joined,
            _ => "",
        });
        let detail = [what.as_str(), fate.unwrap_or_default()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        out.push((at, t.recording.to_owned(), detail));
    }
    let ended_at = moment(call, "ended_at");
    for d in rows {
        let kind = l.delivery_kind(d.kind);
        // The end creates the after-call delivery: its row's clock (the
        // transaction's start) may read a moment before the end's own.
        let created = match (d.kind, ended_at) {
            (DeliveryKind::AfterCall, Some(end)) => d.created_at.max(end),
            _ => d.created_at,
        };
        out.push((
            created,
            format!("{kind}: {}", t.created),
            holds(d, zone, lang),
        ));
        for a in attempts.iter().filter(|a| a.delivery_id == Some(d.id)) {
            let result = a
                .response_status
                .map(|s| s.to_string())
                .or_else(|| a.error.clone())
                .unwrap_or_default();
            out.push((
                a.started_at,
                format!("{kind}: {} {}", t.attempt, a.attempt),
                format!("{result} · {} ms", a.duration_ms),
            ));
        }
        if let Some(at) = d.delivered_at {
            out.push((at, format!("{kind}: {}", t.delivered), String::new()));
        }
        if d.state == DeliveryState::Cancelled {
            if let (Some(at), Some(why)) = (d.expires_at, d.last_error.as_deref()) {
                out.push((at, format!("{kind}: {}", t.not_sent), why.to_owned()));
            }
        }
    }
    // An after-call webhook that waited for its during-call one: that wait
    // ended when the during-call webhook became final.
    let during = rows.iter().find(|d| d.kind == DeliveryKind::DuringCall);
    if let (Some(a), Some(d)) = (after, during) {
        let final_at = d
            .delivered_at
            .or(d.expires_at.filter(|_| d.state.is_final()));
        if let Some(at) = final_at.filter(|at| *at > a.created_at && a.blocked_by.is_none()) {
            if first_attempt(a).is_none_or(|first| first >= at) {
                let kind = l.delivery_kind(DeliveryKind::AfterCall);
                // Shown after the delivery's creation (see `created` above).
                let at = ended_at.map_or(at, |end| at.max(end));
                out.push((at, kind.to_owned(), t.waited_for_during_call.to_owned()));
            }
        }
    }
    out.sort_by_key(|(at, _, _)| *at);
    out.into_iter()
        .map(|(at, what, detail)| Moment {
            at: zone.format_with_offset(at),
            what,
            detail,
        })
        .collect()
}

/// What holds a pending delivery now, if anything.
fn holds(d: &DeliveryRow, zone: Timezone, lang: Lang) -> String {
    let t = lang.timeline();
    if d.state != DeliveryState::Pending {
        return String::new();
    }
    let mut held = Vec::new();
    if d.blocked_by.is_some() {
        held.push(t.waits_for_during_call.to_owned());
    }
    if d.parked {
        held.push(t.parked.to_owned());
    }
    if let Some(at) = d.recording_due_at {
        held.push(format!(
            "{} {}",
            t.held_for_recording,
            zone.format_with_offset(at)
        ));
    }
    if let Some(at) = d.expires_at {
        held.push(format!("{} {}", t.expires, zone.format_with_offset(at)));
    }
    held.join("; ")
}
