//! Ingesting call events: a call row and its delivery rows, atomically, in
//! whatever order the telephony side's events arrive.
//!
//! A call's start and end may cross on the wire, repeat, or reach different
//! processes at once; Postgres orders them. Whichever event comes first
//! inserts the call row (`on conflict do nothing`, so a concurrent insert of
//! the same id waits for the other's commit); whatever comes later locks
//! that row and joins it. The rules, in one place:
//!
//! - **start, then end** (the usual order): the end's after-call delivery
//!   waits for the during-call delivery to be final (`blocked_by`), unless
//!   it already is.
//! - **end first** (the end carries `caller` and `callee`): the call is
//!   stored from the end, and its after-call delivery is held for the start
//!   grace (`next_attempt_at` = now + grace), so a start crossing it on the
//!   wire goes first. No start within the grace: it goes out alone.
//! - **late start** (the call row came from an end): the start's fields and
//!   its visit join the row. While the after-call delivery has not been
//!   attempted (nor is being), it is rebuilt with them and blocked on the new
//!   during-call delivery, which goes first; with no during-call delivery to
//!   wait for (the scenario has no during-call URL, or that endpoint holds
//!   its deliveries) it is due now, the grace having done its work. Once it
//!   has gone out, the during-call delivery is stored `cancelled`
//!   (`call_already_ended`).
//! - **blocked is never due, nor parked**: an after-call delivery waiting
//!   for its during-call one has no due time, and only that one's end (or
//!   its endpoint's pause) makes it due; should its own endpoint hold its
//!   deliveries then, the claim that takes it sees so and parks it.
//! - **repeats**: the same event again is answered with what it stored
//!   (`Ingested::Repeated`); the same call id with other data (caller,
//!   callee, a start date other than the one the end gave) is a conflict.
//!
//! Starts are stored in batches (a lone start is a batch of one): one
//! transaction, and a handful of statements whatever the batch's size. An
//! end is a transaction of its own. Nothing here sends anything: each
//! function returns the new work ([`NewWork`]) for the caller to hand to a
//! dispatcher once the transaction has committed.

mod end;
mod insert;
mod late_start;
mod recent;
mod recording;
mod row;
mod scenario;
mod start;

use std::time::Duration;

use callhook_core::{
    CallStatus, CancelReason, DeliveryKind, DeliveryState, FieldError, PhoneNumber, Visit,
};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::queue::Claimed;
use crate::StoreError;

pub use end::{end, Graces};
pub(crate) use insert::NewDelivery;
pub use recent::{recent, RecentCall};
pub use recording::{rebuild_for_resend, recording, Recording, RecordingOutcome, RecordingStored};
pub(crate) use scenario::IngestScenario;
pub use start::{start_batch, start_batch_then, StartBatch, StartRules};

/// Why an ingest event was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A field's value is wrong (unknown number, unknown scenario, bad date…).
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The same call id was reported before with other data.
    #[error("{0}")]
    Conflict(String),
    /// An end event for a call not started (yet), without `caller` and `callee`.
    #[error("{0}")]
    CallNotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The process is stopping and took nothing more: nothing was stored.
    #[error("shutting down; nothing was stored")]
    ShuttingDown,
    /// The event was taken, but its answer was lost before the commit said
    /// how it went (the task storing it stopped): it may or may not be
    /// stored, and sending it again is safe (the same event is answered as
    /// stored before).
    #[error("interrupted before the commit answered")]
    Interrupted,
    /// The database could not be reached for the group this event was
    /// stored with (why): nothing was stored.
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
}

impl From<sqlx::Error> for IngestError {
    fn from(e: sqlx::Error) -> Self {
        IngestError::Store(e.into())
    }
}

/// The start event, parsed (the date stays text until the scenario's zone is known).
#[derive(Debug, Clone, Serialize)]
pub struct StartCall {
    pub id: String,
    pub caller: PhoneNumber,
    pub callee: PhoneNumber,
    /// RFC 3339, or wall-clock time in the scenario's zone; `None` = now.
    pub date: Option<String>,
    pub scenario_id: Option<Uuid>,
    pub visit: Visit,
}

/// The end event, parsed.
#[derive(Debug, Clone, Serialize)]
pub struct EndCall {
    pub status: CallStatus,
    pub duration: i64,
    pub file_id: Option<String>,
    pub link: Option<String>,
    /// `None` = now.
    pub ended_at: Option<String>,
    /// Only for a call not started (yet): who called which number, and when.
    pub caller: Option<PhoneNumber>,
    pub callee: Option<PhoneNumber>,
    pub date: Option<String>,
    pub scenario_id: Option<Uuid>,
}

/// A delivery as the ingest API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRef {
    pub id: Uuid,
    pub kind: DeliveryKind,
    pub state: DeliveryState,
    /// Why, when it is cancelled.
    pub cancelled: Option<CancelReason>,
}

/// What an ingest event did.
#[derive(Debug)]
pub enum Ingested {
    /// Stored now, with the deliveries it queued.
    Created(Vec<DeliveryRef>),
    /// The same event was stored before; these are its deliveries.
    Repeated(Vec<DeliveryRef>),
}

/// New deliveries may be inserted leased to this process's dispatcher (the
/// lease a claim would stamp), at most `budget` of them, to be handed over
/// in memory once the transaction has committed.
#[derive(Debug, Clone, Copy)]
pub struct LeasePlan {
    pub budget: usize,
    pub lease: Duration,
    /// An endpoint's in-flight cap when its scenario sets none: no more are
    /// leased to an endpoint than it has room for (see `queue::claim`).
    pub endpoint_cap: i32,
}

/// What an ingest transaction left to do once committed.
#[derive(Debug, Default)]
pub struct NewWork {
    /// Deliveries inserted leased (see [`LeasePlan`]): hand them over.
    pub leased: Vec<Claimed>,
    /// Deliveries inserted due now, for claims: wake the dispatchers.
    pub queued: usize,
    /// The scenario of each call stored with nothing covering its number.
    pub unattributed: Vec<Uuid>,
}

/// The deliveries of one kind of a call, oldest first.
async fn deliveries_of(
    e: impl PgExecutor<'_>,
    call_id: &str,
    kind: DeliveryKind,
) -> Result<Vec<DeliveryRef>, StoreError> {
    Ok(sqlx::query_as!(
        DeliveryRef,
        r#"select id, kind as "kind: DeliveryKind", state as "state: DeliveryState",
                  case when state = 'cancelled' then last_error end as "cancelled?: CancelReason"
             from deliveries where call_id = $1 and kind = $2 order by id"#,
        call_id,
        kind as _
    )
    .fetch_all(e)
    .await?)
}
