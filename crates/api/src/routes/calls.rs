//! Ingest API: call events from the telephony side.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callhook_core::call::{check_text, parse_call_id, MAX_FIELD_LEN};
use callhook_core::{CallStatus, FieldError, PhoneNumber, Visit};
use callhook_core::{CancelReason, DeliveryKind, DeliveryState};
use callhook_store::calls::{DeliveryRef, EndCall, Ingested, StartCall};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ErrorBody, ErrorDetail};
use crate::json::{JsonObject, LargeJsonObject, PathParam};
use crate::{ApiError, AppState};

/// The call's start. Visit fields (`visit_id`, `marker`, `order_id`,
/// `google_client_id`, `landing_page`, `domain`, `city`, `country`, `ip`,
/// `first_visit`, `referrer`, `utm_*`, `roistat_param_1..5`,
/// `metrika_client_id`, `source_level_1`, `source_level_2`) may be given too.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct StartCallBody {
    /// The call's unique number on the telephony side, e.g. `"313"`.
    pub id: String,
    /// Who called, e.g. `79990009911`.
    #[schema(pattern = r"^[ +.()\-]*(?:[0-9][ +.()\-]*){10,15}$")]
    pub caller: String,
    /// The tracking number dialled, e.g. `78005552233`.
    #[schema(pattern = r"^[ +.()\-]*(?:[0-9][ +.()\-]*){10,15}$")]
    pub callee: String,
    /// RFC 3339, or `YYYY-MM-DD HH:MM:SS` in the scenario's zone; default now.
    #[serde(default)]
    pub date: Option<String>,
    /// Otherwise the scenario is found from `callee`.
    #[serde(default)]
    pub scenario_id: Option<Uuid>,
}

const START_FIELDS: &[&str] = &["id", "caller", "callee", "date", "scenario_id"];

/// The call is over.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndCallBody {
    /// ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL, DONTCALL,
    /// TORTURE or ACTIVE (ACRIVE accepted).
    #[schema(
        pattern = "^(ACTIVE|ACRIVE|ANSWER|BUSY|NOANSWER|CANCEL|CONGESTION|CHANUNAVAIL|DONTCALL|TORTURE)$"
    )]
    pub status: String,
    /// Seconds, a whole number ≥ 0.
    #[schema(minimum = 0, maximum = 2147483647)]
    pub duration: i64,
    #[serde(default)]
    pub file_id: Option<String>,
    /// The recording's address.
    #[serde(default)]
    pub link: Option<String>,
    /// Default now.
    #[serde(default)]
    pub ended_at: Option<String>,
    /// For a call not started (yet): the call is stored from its end.
    #[serde(default)]
    #[schema(pattern = r"^[ +.()\-]*(?:[0-9][ +.()\-]*){10,15}$")]
    pub caller: Option<String>,
    /// For a call not started (yet).
    #[serde(default)]
    #[schema(pattern = r"^[ +.()\-]*(?:[0-9][ +.()\-]*){10,15}$")]
    pub callee: Option<String>,
    /// For a call not started (yet): when it began.
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub scenario_id: Option<Uuid>,
}

/// What an ingest request stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct IngestResponse {
    pub call_id: String,
    pub deliveries: Vec<DeliveryRefView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeliveryRefView {
    pub id: Uuid,
    /// `during_call` or `after_call`.
    #[schema(value_type = String, example = "during_call")]
    pub kind: DeliveryKind,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    #[schema(value_type = String, example = "pending")]
    pub state: DeliveryState,
    /// Why it is cancelled (absent otherwise): `payload_too_large` when the
    /// call's values make the body pass `CALLHOOK_MAX_PAYLOAD_BYTES`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "payload_too_large")]
    pub cancelled: Option<CancelReason>,
}

impl From<DeliveryRef> for DeliveryRefView {
    fn from(d: DeliveryRef) -> Self {
        Self {
            id: d.id,
            kind: d.kind,
            state: d.state,
            cancelled: d.cancelled,
        }
    }
}

fn respond(call_id: String, ingested: Ingested) -> (StatusCode, Json<IngestResponse>) {
    let (status, deliveries) = match ingested {
        Ingested::Created(d) => (StatusCode::ACCEPTED, d),
        Ingested::Repeated(d) => (StatusCode::OK, d),
    };
    (
        status,
        Json(IngestResponse {
            call_id,
            deliveries: deliveries.into_iter().map(Into::into).collect(),
        }),
    )
}

fn opt_text(field: &str, v: Option<String>) -> Result<Option<String>, FieldError> {
    v.map(|s| check_text(field, &s, MAX_FIELD_LEN).map(str::to_owned))
        .transpose()
}

/// Report a call's start: stores the call and queues its during-call webhook.
#[utoipa::path(post, path = "/api/v1/calls", tag = "ingest", request_body = StartCallBody,
    security(("ingest_token" = [])),
    responses((status = 202, body = IngestResponse, description = "stored, webhooks queued"),
              (status = 200, body = IngestResponse, description = "the same event again; nothing new"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the id was reported with other data"),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "database unavailable; retry")))]
pub(crate) async fn start(
    State(state): State<AppState>,
    body: JsonObject,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    let input = parse_start(&body)?;
    let call_id = input.id.clone();
    let ingested = state.calls.start(input).await?;
    if let Ingested::Created(d) = &ingested {
        metrics::counter!("callhook_calls_ingested_total", "event" => "start").increment(1);
        tracing::info!(%call_id, deliveries = d.len(), "call started");
    }
    // The start queue has seen its delivery on its way.
    Ok(respond(call_id, ingested))
}

/// Report a call's end: records status, duration and recording, and queues
/// the after-call webhook.
#[utoipa::path(post, path = "/api/v1/calls/{id}/end", tag = "ingest", request_body = EndCallBody,
    security(("ingest_token" = [])), params(("id" = String, Path, description = "the call's id")),
    responses((status = 202, body = IngestResponse), (status = 200, body = IngestResponse),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "not started yet and no caller/callee given: send it again once the start is in"),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(crate) async fn end(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    body: JsonObject,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    let id = parse_call_id(&id, "id")?;
    let input = parse_end(&body)?;
    let ingested = state.calls.end(&id, &input).await?;
    if let Ingested::Created(d) = &ingested {
        metrics::counter!("callhook_calls_ingested_total", "event" => "end").increment(1);
        tracing::info!(call_id = %id, deliveries = d.len(), "call ended");
    }
    Ok(respond(id, ingested))
}

/// Most calls one batch may carry.
pub(crate) const MAX_BATCH: usize = 1000;

/// Many start events at once, for telephony that reports in bulk.
#[derive(Debug, Deserialize, ToSchema)]
#[expect(
    dead_code,
    reason = "describes the body in the OpenAPI document; the handler reads it as it streams"
)]
pub(crate) struct BatchBody {
    /// 1 to 1000 start events, each exactly as `POST /api/v1/calls` takes it.
    pub calls: Vec<StartCallBody>,
}

/// One result per call, in the order sent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BatchResponse {
    pub results: Vec<BatchItem>,
}

/// What `POST /api/v1/calls` would have answered for this call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BatchItem {
    /// The call's id, when the item had a readable one.
    pub call_id: Option<String>,
    /// 202 stored, 200 the same event again, 409 conflicting repeat, 422 a bad field.
    pub status: u16,
    /// The call's deliveries (202 and 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<DeliveryRefView>>,
    /// Why it was refused (409 and 422); `field` names the item's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

impl BatchItem {
    fn refused(call_id: Option<String>, e: ApiError) -> Self {
        Self {
            call_id,
            status: e.status.as_u16(),
            deliveries: None,
            error: Some(ErrorDetail {
                code: e.code.to_owned(),
                message: e.message,
                field: e.field,
            }),
        }
    }
}

/// Report many call starts at once: each is stored (or refused) as
/// `POST /api/v1/calls` would, all in one transaction, one commit.
#[utoipa::path(post, path = "/api/v1/calls/batch", tag = "ingest", request_body = BatchBody,
    security(("ingest_token" = [])),
    responses((status = 200, body = BatchResponse, description = "per-call results, in order"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 413, body = ErrorBody, description = "body over 2 MiB"),
              (status = 422, body = ErrorBody, description = "`calls` missing, empty or over 1000"),
              (status = 503, body = ErrorBody, description = "database unavailable; nothing stored, retry")))]
pub(crate) async fn start_batch(
    State(state): State<AppState>,
    LargeJsonObject(body): LargeJsonObject,
) -> Result<Json<BatchResponse>, ApiError> {
    body.only(|k| k == "calls")?;
    let items = match body.0.get("calls") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_BATCH => items,
        _ => {
            return Err(ApiError::unprocessable(
                "calls",
                "invalid_batch",
                format!("calls must be an array of 1 to {MAX_BATCH} start events"),
            ))
        }
    };
    let mut results: Vec<Option<BatchItem>> = Vec::with_capacity(items.len());
    let mut valid = Vec::with_capacity(items.len());
    for item in items {
        let call_id = item.get("id").and_then(Value::as_str).map(str::to_owned);
        let parsed = match item {
            Value::Object(map) => parse_start(&JsonObject(map.clone())),
            _ => Err(ApiError::unprocessable(
                "calls",
                "invalid_type",
                "each call must be a JSON object",
            )),
        };
        match parsed {
            Ok(input) => {
                valid.push(input);
                results.push(None);
            }
            Err(e) => results.push(Some(BatchItem::refused(call_id, e))),
        }
    }
    let outcomes = state.calls.start_batch(&valid).await?;
    let mut created = 0u64;
    let mut outcomes = valid.into_iter().zip(outcomes);
    for slot in results.iter_mut().filter(|r| r.is_none()) {
        let (input, outcome) = outcomes.next().expect("one outcome per valid call");
        *slot = Some(match outcome {
            Ok(ingested) => {
                let (status, deliveries) = match ingested {
                    Ingested::Created(d) => {
                        created += 1;
                        (StatusCode::ACCEPTED, d)
                    }
                    Ingested::Repeated(d) => (StatusCode::OK, d),
                };
                BatchItem {
                    call_id: Some(input.id),
                    status: status.as_u16(),
                    deliveries: Some(deliveries.into_iter().map(Into::into).collect()),
                    error: None,
                }
            }
            Err(e) => BatchItem::refused(Some(input.id), e.into()),
        });
    }
    metrics::counter!("callhook_calls_ingested_total", "event" => "start").increment(created);
    tracing::info!(calls = results.len(), created, "call batch ingested");
    Ok(Json(BatchResponse {
        results: results
            .into_iter()
            .map(|r| r.expect("every slot filled"))
            .collect(),
    }))
}

/// A start event's body, checked: the ingest parser without IO (what the
/// handler and the fuzz target run).
pub(crate) fn parse_start(body: &JsonObject) -> Result<StartCall, ApiError> {
    body.only(|k| START_FIELDS.contains(&k) || Visit::is_field(k))?;
    let visit = Visit::from_json(&body.0)?;
    let mut core_only = body.0.clone();
    core_only.retain(|k, _| START_FIELDS.contains(&k.as_str()));
    let b: StartCallBody = JsonObject(core_only).parse()?;
    Ok(StartCall {
        id: parse_call_id(&b.id, "id")?,
        caller: PhoneNumber::parse(&b.caller, "caller")?,
        callee: PhoneNumber::parse(&b.callee, "callee")?,
        date: opt_text("date", b.date)?,
        scenario_id: b.scenario_id,
        visit,
    })
}

/// An end event's body, checked, without IO.
pub(crate) fn parse_end(body: &JsonObject) -> Result<EndCall, ApiError> {
    let b: EndCallBody = body.parse()?;
    if b.duration < 0 || b.duration > i64::from(i32::MAX) {
        return Err(FieldError::new(
            "duration",
            "out_of_range",
            "duration must be a whole number of seconds ≥ 0",
        )
        .into());
    }
    Ok(EndCall {
        status: CallStatus::parse(&b.status, "status")?,
        duration: b.duration,
        file_id: opt_text("file_id", b.file_id)?,
        link: opt_text("link", b.link)?,
        ended_at: opt_text("ended_at", b.ended_at)?,
        caller: b
            .caller
            .map(|c| PhoneNumber::parse(&c, "caller"))
            .transpose()?,
        callee: b
            .callee
            .map(|c| PhoneNumber::parse(&c, "callee"))
            .transpose()?,
        date: opt_text("date", b.date)?,
        scenario_id: b.scenario_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any bytes: an answer (accepted or a client error with a field), never
    /// a panic and never a 5xx. The fuzz target `ingest_body` does the same
    /// with coverage guidance.
    fn check(bytes: &[u8]) {
        let Ok(obj) = JsonObject::from_slice(bytes) else {
            return;
        };
        for result in [parse_start(&obj).map(|_| ()), parse_end(&obj).map(|_| ())] {
            if let Err(e) = result {
                assert!(e.status.is_client_error(), "{} for {bytes:?}", e.status);
            }
        }
    }

    proptest! {
        #[test]
        fn any_bytes_are_a_client_error_or_a_call(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            check(&bytes);
        }

        #[test]
        fn any_object_of_known_keys_is_a_client_error_or_a_call(
            pairs in proptest::collection::vec((
                prop_oneof![Just("id"), Just("caller"), Just("callee"), Just("date"), Just("scenario_id"),
                            Just("visit_id"), Just("order_id"), Just("city"), Just("status"), Just("duration"),
                            Just("link"), Just("utm_source"), Just("roistat_param_5"), Just("x")],
                prop_oneof![Just("null".to_owned()), Just("1e400".to_owned()), Just("-1".to_owned()),
                            Just("18446744073709551616".to_owned()), Just("[]".to_owned()), Just("{}".to_owned()),
                            "\\PC{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                            "[0-9+() -]{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap())],
            ), 0..8),
        ) {
            let body = format!("{{{}}}", pairs.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(","));
            check(body.as_bytes());
        }
    }
}
