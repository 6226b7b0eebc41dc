//! A stored call, as the events that join it later read it.

use callhook_core::{Call, CallEnd, CallStatus, PhoneNumber, Visit};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::StoreError;

/// A call row with what payloads and the ordering rules need.
#[derive(Debug)]
pub(super) struct CallRow {
    pub id: String,
    pub scenario_id: Option<Uuid>,
    pub caller: String,
    pub callee: String,
    pub started_at: DateTime<Utc>,
    /// Stored from an end event without a `date`: a start may correct it.
    pub started_at_estimated: bool,
    /// The visit columns, read as one record.
    pub visit: Json<Visit>,
    /// Null while the call has had no start event.
    pub start_hash: Option<String>,
    pub end_hash: Option<String>,
    pub status: Option<String>,
    pub duration: Option<i32>,
    pub file_id: Option<String>,
    pub link: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl CallRow {
    /// The call as the payload builder sees it, with its end once it has one.
    pub(super) fn call(&self) -> Call {
        let end = match (&self.status, self.ended_at) {
            (Some(status), Some(ended_at)) => Some(CallEnd {
                status: CallStatus::parse(status, "status").unwrap_or(CallStatus::Active),
                duration: i64::from(self.duration.unwrap_or(0)),
                file_id: self.file_id.clone(),
                link: self.link.clone(),
                ended_at,
            }),
            _ => None,
        };
        Call {
            id: self.id.clone(),
            caller: PhoneNumber::from_trusted(self.caller.clone()),
            callee: PhoneNumber::from_trusted(self.callee.clone()),
            date: self.started_at,
            visit: self.visit.0.clone(),
            end,
        }
    }
}

/// Locks the call's row for this transaction and reads it.
pub(super) async fn lock_call(
    tx: &mut PgConnection,
    id: &str,
) -> Result<Option<CallRow>, StoreError> {
    // The visit columns come as one JSON record (`to_jsonb` of the row: a
    // visit reads the fields it knows and ignores the rest).
    Ok(sqlx::query_as!(
        CallRow,
        r#"select id, scenario_id, caller, callee, started_at, started_at_estimated,
                  to_jsonb(c) as "visit!: Json<Visit>",
                  start_hash, end_hash, status, duration, file_id, link, ended_at
             from calls c where id = $1
              for update"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await?)
}
