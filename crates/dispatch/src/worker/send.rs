//! One worker: sends one delivery and decides its fate.

use std::time::Duration;

use callhook_core::{
    CancelReason, DeliveryKind, HeldReason, Observed, RetrySchedule, SigningSecret,
};
use callhook_store::queue::{AttemptRecord, Claimed, Completion, Outcome};
use chrono::{DateTime, Utc};

use tokio::sync::OwnedSemaphorePermit;

use super::Ctx;
use crate::seats::Seat;
use crate::sender::{AttemptResult, Webhook};

/// When a delivery whose host stayed busy is due again.
const HOST_BUSY_RETRY: Duration = Duration::from_millis(500);

/// Why a delivery did not get its host's turn.
enum HostWait {
    /// The dispatcher is stopping: back to the queue at once.
    Stopping,
    /// Still not its host's turn after the dispatcher's `seat_wait`.
    Busy,
    /// No room to wait: slow receivers' rows fill the waiting room.
    RoomFull,
}

/// What a worker holds of its seat.
enum Held {
    Seat(Seat),
    /// Its seat given up on the way back to the queue (the waiting room
    /// full, or the dispatcher stopping while it waited): only what the
    /// writer frees once its result is written.
    Kept(OwnedSemaphorePermit),
}

impl Held {
    /// Its place among the unrecorded (or in the waiting room), for the
    /// writer to free.
    fn into_unrecorded(self) -> OwnedSemaphorePermit {
        match self {
            Held::Seat(s) => s.sent(),
            Held::Kept(p) => p,
        }
    }
}

/// Sends one claimed delivery on `seat` and decides its fate; returns it
/// with the seat's place among the unrecorded (its request slot is free).
pub(super) async fn process(
    ctx: &Ctx,
    row: Claimed,
    seat: Seat,
) -> (Completion, OwnedSemaphorePermit) {
    let mut held = Some(Held::Seat(seat));
    let completion = attempt(ctx, &row, &mut held).await;
    let held = held.expect("a worker always ends holding its place");
    (completion, held.into_unrecorded())
}

async fn attempt(ctx: &Ctx, row: &Claimed, held: &mut Option<Held>) -> Completion {
    let completion = |outcome, attempt, health| Completion {
        id: row.id,
        lease_token: row.lease_token,
        outcome,
        attempt,
        health,
    };
    // Its call ended its grace ago: its moment has passed (its after-call
    // webhook, released by this, carries every field it had).
    if row.kind == DeliveryKind::DuringCall && row.expires_at.is_some_and(|t| t <= Utc::now()) {
        metrics::counter!("callhook_deliveries_total", "kind" => row.kind.as_str(), "outcome" => "cancelled").increment(1);
        return completion(Outcome::Cancelled(CancelReason::CallEnded), None, None);
    }
    let (url, secrets, custom) = match destination(ctx, row) {
        Ok(d) => d,
        Err(reason) => {
            let held = Outcome::Held {
                reason,
                retry_in: Duration::from_secs(60),
            };
            return completion(held, None, None);
        }
    };
    let Some(url) = url else {
        let reason = if row.signing_secret.is_none() && row.kind != DeliveryKind::OperatorEvent {
            CancelReason::ScenarioDeleted
        } else {
            CancelReason::UrlRemoved
        };
        metrics::counter!("callhook_deliveries_total", "kind" => row.kind.as_str(), "outcome" => "cancelled").increment(1);
        return completion(Outcome::Cancelled(reason), None, None);
    };
    if row.endpoint_state.is_some_and(|s| s.holds_deliveries()) && !row.probe {
        // Its endpoint is paused or disabled: it waits with the others.
        return completion(Outcome::Parked, None, None);
    }
    let _host_slot = match host_slot(ctx, url, held).await {
        Ok(slot) => slot,
        Err(HostWait::Stopping) => {
            return completion(Outcome::Deferred(Duration::ZERO), None, None)
        }
        Err(HostWait::RoomFull) => {
            return completion(Outcome::Deferred(HOST_BUSY_RETRY), None, None)
        }
        // Its host was busy the whole wait: its cap is more than the
        // receiver keeps up with (congestion: the cap halves).
        Err(HostWait::Busy) => {
            let busy = told_endpoint(row, Observed::Busy);
            return completion(Outcome::Deferred(HOST_BUSY_RETRY), None, busy);
        }
    };
    let id = row.id.to_string();
    let result = ctx
        .sender
        .send(Webhook {
            url,
            id: &id,
            payload: row.payload.as_bytes(),
            secrets: &secrets,
            custom: &custom,
        })
        .await;
    let attempt_no = row.attempt_count as u32 + 1;
    let outcome = until_expiry(decide(&ctx.schedule, &result, attempt_no), row.expires_at);
    record_metrics(row, &result, &outcome);
    tracing::debug!(
        delivery_id = %row.id, call_id = ?row.call_id, kind = %row.kind, attempt = attempt_no,
        probe = row.probe, status = ?result.status, error = ?result.error_text(), ?outcome, "attempt"
    );
    let health = told_endpoint(row, observed(&result));
    completion(outcome, Some(attempt_record(url, &result)), health)
}

/// Where a delivery goes, and signed with what: an operator event to the
/// operator's URL; a call's webhook to its scenario's URL as it is now (no
/// URL: removed), with the current secret and, during a rotation's overlap,
/// the previous one (receivers still holding the old key keep verifying).
/// The scenario's headers for the kind go too, secret values opened. Held
/// when a stored secret cannot be opened: never an unsigned webhook, nor
/// one without its header.
/// A webhook's URL (none: removed), its signing keys and its headers.
type Destination<'a> = (Option<&'a str>, Vec<SigningSecret>, Vec<(String, String)>);

/// The scenario's headers for this webhook, secret values opened.
fn custom_headers(
    ctx: &Ctx,
    row: &Claimed,
    scenario: uuid::Uuid,
) -> Result<Vec<(String, String)>, HeldReason> {
    let Some(kind) = callhook_core::EndpointKind::of(row.kind) else {
        return Ok(Vec::new());
    };
    let headers = row
        .headers
        .as_ref()
        .map(|h| h.0.as_slice())
        .unwrap_or_default();
    callhook_core::headers::to_send(headers, &ctx.sealer, scenario, kind).map_err(|(header, e)| {
        tracing::error!(
            scenario_id = %scenario, delivery_id = %row.id, %header, error = %e,
            "a secret header's stored value cannot be read; nothing sent: check CALLHOOK_SECRET_KEY, or save the header's value again"
        );
        HeldReason::InvalidHeaderSecret
    })
}

fn destination<'a>(ctx: &'a Ctx, row: &'a Claimed) -> Result<Destination<'a>, HeldReason> {
    if row.kind == DeliveryKind::OperatorEvent {
        return Ok(match &ctx.operator {
            Some(op) => (Some(op.url.as_str()), vec![op.secret.clone()], Vec::new()),
            None => (None, Vec::new(), Vec::new()),
        });
    }
    let scenario = row.scenario_id.unwrap_or_default();
    let custom = custom_headers(ctx, row, scenario)?;
    let secrets: Result<Vec<SigningSecret>, _> =
        [&row.signing_secret, &row.previous_signing_secret]
            .into_iter()
            .flatten()
            .map(|s| ctx.sealer.key(s, scenario))
            .collect();
    match secrets {
        Ok(secrets) => Ok((row.url.as_deref(), secrets, custom)),
        Err(e) => {
            tracing::error!(
                scenario_id = ?row.scenario_id, delivery_id = %row.id, error = %e,
                "the scenario's stored signing secret cannot be read; nothing sent: check CALLHOOK_SECRET_KEY, or rotate the secret (POST /api/v1/scenarios/{{id}}/secret/rotate)"
            );
            Err(HeldReason::InvalidSigningSecret)
        }
    }
}

/// A request slot at `url`'s host. When the host has its share in flight
/// (a slow receiver, or a busy one) the worker waits for its turn without
/// its request slot or its place among the unrecorded (`Seat::step_aside`),
/// so other receivers' webhooks are not held up behind it. An error sends
/// the delivery back to the queue: the dispatcher is stopping, the waiting
/// room is full, or it was still not its host's turn after the
/// dispatcher's `seat_wait`.
async fn host_slot(
    ctx: &Ctx,
    url: &str,
    held: &mut Option<Held>,
) -> Result<OwnedSemaphorePermit, HostWait> {
    if let Some(slot) = ctx.hosts.try_acquire(url) {
        return Ok(slot);
    }
    let Some(Held::Seat(seat)) = held.take() else {
        unreachable!("a worker is seated until it waits for its host")
    };
    let aside = match seat.step_aside() {
        Ok(aside) => aside,
        Err(place) => {
            // Rather than wait in a place another endpoint's webhook needs:
            // back to the queue (its place is freed once that is recorded).
            *held = Some(Held::Kept(place));
            metrics::counter!("callhook_host_waits_total", "result" => "room_full").increment(1);
            return Err(HostWait::RoomFull);
        }
    };
    let waiting = metrics::gauge!("callhook_deliveries_waiting_for_host");
    waiting.increment(1.0);
    let slot = ctx.hosts.acquire(url).await;
    waiting.decrement(1.0);
    let result = if slot.is_some() { "sent" } else { "returned" };
    metrics::counter!("callhook_host_waits_total", "result" => result).increment(1);
    match aside.back().await {
        Ok(seat) => *held = Some(Held::Seat(seat)),
        Err(kept) => {
            // Stopping: back to the queue with the rest.
            *held = Some(Held::Kept(kept));
            return Err(HostWait::Stopping);
        }
    }
    // Still not its host's turn after a while (a slow or hanging
    // receiver): back to the queue, and serve other hosts.
    slot.ok_or(HostWait::Busy)
}

/// What a delivery tells its endpoint (its health, its cap): nothing for an
/// operator event, which has no endpoint of a scenario's.
fn told_endpoint(row: &Claimed, seen: Observed) -> Option<(uuid::Uuid, DeliveryKind, Observed)> {
    row.scenario_id
        .filter(|_| row.kind != DeliveryKind::OperatorEvent)
        .map(|scenario_id| (scenario_id, row.kind, seen))
}

/// What an attempt tells about its endpoint.
pub(super) fn observed(result: &AttemptResult) -> Observed {
    if result.is_success() {
        return Observed::Success;
    }
    let error =
        callhook_core::delivery::failure_text(result.status.map(i32::from), result.error_text())
            .unwrap_or_else(|| "request".to_owned());
    Observed::Failure {
        error,
        gone: result.status == Some(410),
    }
}

/// Delivered on 2xx; otherwise the next retry from the schedule, or failed.
pub fn decide(schedule: &RetrySchedule, result: &AttemptResult, attempt_no: u32) -> Outcome {
    if result.is_success() {
        return Outcome::Delivered;
    }
    match schedule.next_delay(attempt_no, rand::random::<f64>(), result.retry_after) {
        Some(delay) => Outcome::Retry(delay),
        None => Outcome::Failed,
    }
}

/// A retry of a delivery that expires is due by its expiry at the latest
/// (then it is cancelled, not sent).
fn until_expiry(outcome: Outcome, expires_at: Option<DateTime<Utc>>) -> Outcome {
    match (outcome, expires_at) {
        (Outcome::Retry(d), Some(at)) => {
            let left = (at - Utc::now()).to_std().unwrap_or_default();
            Outcome::Retry(d.min(left))
        }
        (o, _) => o,
    }
}

/// The attempt row for a result.
pub fn attempt_record(url: &str, result: &AttemptResult) -> AttemptRecord {
    AttemptRecord {
        url: url.to_owned(),
        started_at: result.started_at,
        duration_ms: i32::try_from(result.duration.as_millis()).unwrap_or(i32::MAX),
        response_status: result.status.map(i32::from),
        response_body: result.body.clone(),
        error: result.error_text().map(str::to_owned),
    }
}

fn record_metrics(row: &Claimed, result: &AttemptResult, outcome: &Outcome) {
    let error = match (result.error, result.status) {
        (Some(e), _) => e.as_str(),
        (None, Some(s)) if (200..300).contains(&s) => "none",
        (None, _) => "http_status",
    };
    metrics::counter!("callhook_attempts_total", "error" => error).increment(1);
    metrics::histogram!("callhook_receiver_response_seconds").record(result.duration.as_secs_f64());
    let final_outcome = match outcome {
        Outcome::Delivered => {
            let age = (chrono::Utc::now() - row.created_at)
                .to_std()
                .unwrap_or_default();
            metrics::histogram!("callhook_ingest_to_delivery_seconds").record(age.as_secs_f64());
            Some("delivered")
        }
        Outcome::Failed => Some("failed"),
        _ => None,
    };
    if let Some(o) = final_outcome {
        metrics::counter!("callhook_deliveries_total", "kind" => row.kind.as_str(), "outcome" => o)
            .increment(1);
    }
}
