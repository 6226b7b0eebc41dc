//! The delivery log's answers: a delivery, its attempts, a page of the
//! list, a call with its deliveries (`routes::deliveries` serves them).

use callhook_core::{DeliveryKind, DeliveryState};
use callhook_store::log::{AttemptRow, DeliveryRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A delivery: the `deliveries` table's columns (but the internal lease).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeliveryView {
    /// UUIDv7: the `webhook-id` header, the same on every attempt.
    pub id: Uuid,
    /// Null for an operator event (`kind` = `operator_event`).
    pub call_id: Option<String>,
    /// Null once the scenario is deleted, and for operator events.
    pub scenario_id: Option<Uuid>,
    /// `during_call`, `after_call` or `operator_event`.
    #[schema(value_type = String, example = "after_call")]
    pub kind: DeliveryKind,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    #[schema(value_type = String, example = "pending")]
    pub state: DeliveryState,
    /// Pending and waiting for its paused or disabled endpoint (no due time).
    pub parked: bool,
    /// Attempts made so far.
    pub attempt_count: i32,
    /// When a pending delivery is due (or its claim runs out); null while
    /// it waits for `blocked_by`.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// An after-call delivery waiting for its call's during-call delivery
    /// (this id) to be final; null otherwise.
    pub blocked_by: Option<Uuid>,
    /// The last attempt's HTTP status (null when no response came back).
    pub last_status: Option<i32>,
    /// What went wrong last, in the one failure text shown everywhere
    /// (the console, health, psql's `delivery_log`): the last attempt's
    /// transport error (`timeout`, `connect`, …), why it was cancelled or
    /// is held, else `http_<status>` for a last status that is not 2xx;
    /// null when nothing went wrong.
    pub last_error: Option<String>,
    /// Cancelled `filtered`: the condition (of the scenario's
    /// `during_call_filter` or `after_call_filter`, as it was when the
    /// delivery was created) that the call did not meet. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::ops::scenarios::ConditionSchema>)]
    pub filtered_by: Option<callhook_core::Condition>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// A during-call delivery whose call has ended: if it is not delivered
    /// by then, it is cancelled `call_ended`. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// An after-call delivery held for its call's recording
    /// (`recording_wait`) until then, or until the recording comes. Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_due_at: Option<DateTime<Utc>>,
    /// The exact body sent, as text.
    pub payload: String,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(d: DeliveryRow) -> Self {
        Self {
            id: d.id,
            call_id: d.call_id,
            scenario_id: d.scenario_id,
            kind: d.kind,
            state: d.state,
            attempt_count: d.attempt_count,
            next_attempt_at: d.next_attempt_at,
            blocked_by: d.blocked_by,
            parked: d.parked,
            last_status: d.last_status,
            last_error: callhook_core::delivery::failure_text(
                d.last_status,
                d.last_error.as_deref(),
            ),
            filtered_by: d.filtered_by.map(|c| c.0),
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            expires_at: d.expires_at,
            recording_due_at: d.recording_due_at,
            payload: d.payload,
        }
    }
}

/// One HTTP attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AttemptView {
    pub id: i64,
    /// 1, 2, … per delivery.
    pub attempt: i32,
    /// The URL actually used.
    pub url: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    /// Null when no response came back.
    pub response_status: Option<i32>,
    /// The first 4 KiB of the answer.
    pub response_body: Option<String>,
    /// Null on a response; otherwise `timeout`, `connect`, `dns`, `tls`,
    /// `blocked_destination` or `request`.
    pub error: Option<String>,
}

impl From<AttemptRow> for AttemptView {
    fn from(a: AttemptRow) -> Self {
        Self {
            id: a.id,
            attempt: a.attempt,
            url: a.url,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            response_status: a.response_status,
            response_body: a.response_body,
            error: a.error,
        }
    }
}

/// A delivery with its attempts in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryView,
    pub attempts: Vec<AttemptView>,
}

/// A page of the list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

/// A call: every column of `calls` (the payload's fields, `status`,
/// `duration`, `file_id`, `link`, `started_at`, `ended_at`, timestamps…) plus
/// its deliveries with their attempts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallDetail {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub call: serde_json::Value,
    pub deliveries: Vec<DeliveryDetail>,
}
