//! The delivery log: filters (scenario, kind, state, call id, time range),
//! newest first, keyset pages, and new rows appearing live.
//!
//! Live rows: the live horizon ([`log::live_horizon`]) is a moment below
//! which every row is committed. The newest page notes the horizon and the
//! rows it shows above it; a hidden row polls (htmx, every 2 s) for the ids
//! from there to the new horizon, leaves out those already shown, and
//! replaces itself with the rows found and a poller for the next window.
//! The windows meet end to end and each is read once its writers have
//! committed, so the live view neither skips nor repeats a row. "Older"
//! pages are keyset pages below the last id shown, which new rows never
//! shift.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use callhook_core::{DeliveryKind, DeliveryState, FieldError, Timezone};
use callhook_store::log::{self, DeliveryFilter, DeliveryRow};
use callhook_store::scenarios;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::{Lang, ShownError};
use super::time::{read_input, Zones};
use super::{key, page, render, ConsoleError, SignedPage};
use crate::ops::deliveries::{decode_cursor, encode_cursor};
use crate::{ApiError, AppState};

/// Rows a page of the delivery log shows (and a live poll adds at most).
const PAGE: usize = 50;

/// The filters as typed (blank = any), the page's cursor and the live
/// window's start. `lang` is read by [`SignedPage`].
#[derive(Debug, Default, Deserialize)]
pub(super) struct DeliveriesQuery {
    #[serde(default)]
    scenario_id: String,
    #[serde(default)]
    call_id: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    kind: String,
    /// `datetime-local`, in the chosen scenario's zone (else UTC).
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    /// The last id of the previous page (an opaque cursor).
    after: Option<String>,
    /// Live poll: the window's start, milliseconds since the epoch.
    from: Option<i64>,
    /// Live poll: ids at or above `from` already on the page, comma-separated.
    #[serde(default)]
    seen: String,
}

impl DeliveriesQuery {
    fn filters(&self) -> [(&'static str, &str); 6] {
        [
            ("scenario_id", self.scenario_id.trim()),
            ("call_id", self.call_id.trim()),
            ("state", self.state.trim()),
            ("kind", self.kind.trim()),
            ("since", self.since.trim()),
            ("until", self.until.trim()),
        ]
    }

    /// The store's filter and the zone the range was read in; an error names
    /// the field.
    fn parse(&self, zones: &Zones) -> Result<(DeliveryFilter, Timezone), FieldError> {
        let [scenario, call, state, kind, since, until] = self.filters().map(|(_, v)| v);
        let blank = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let scenario_id = blank(scenario)
            .map(|v| {
                v.parse::<Uuid>().map_err(|_| {
                    FieldError::new("scenario_id", "invalid", "scenario_id must be a UUID")
                })
            })
            .transpose()?;
        let zone = zones.zone(scenario_id);
        let state = blank(state)
            .map(|v| v.parse::<DeliveryState>())
            .transpose()?;
        let kind = blank(kind).map(|v| v.parse::<DeliveryKind>()).transpose()?;
        Ok((
            DeliveryFilter {
                scenario_id,
                call_id: blank(call)
                    .map(|c| callhook_core::call::parse_call_id(&c, "call_id"))
                    .transpose()?,
                state,
                kind,
                since: read_input(zone, since, "since")?,
                until: read_input(zone, until, "until")?,
            },
            zone,
        ))
    }

    /// This page's filters as a query string, plus `extra`.
    fn link(&self, lang: Lang, extra: &[(&str, &str)]) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("lang", lang.code());
        for (k, v) in self.filters() {
            if !v.is_empty() {
                query.append_pair(k, v);
            }
        }
        for (k, v) in extra {
            if !v.is_empty() {
                query.append_pair(k, v);
            }
        }
        query.finish()
    }
}

/// What a pending delivery waits for, besides its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitingFor {
    /// Its call's during-call webhook (it is the after-call one).
    DuringCall,
    /// Its endpoint, paused or disabled.
    Endpoint,
}

impl WaitingFor {
    /// Its name on the page (`data-waiting`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::DuringCall => "waiting_for_during",
            Self::Endpoint => "waiting_for_endpoint",
        }
    }
}

struct DeliveryLine {
    id: Uuid,
    created: String,
    /// Its scenario's name (blank for an operator event).
    scenario: String,
    call_id: Option<String>,
    /// Its call's page (encoded), with the call id.
    call_href: Option<String>,
    kind: DeliveryKind,
    state: DeliveryState,
    attempts: i32,
    /// When a pending delivery goes next (in its scenario's zone).
    next_attempt: Option<String>,
    /// What a pending delivery waits for.
    waiting_for: Option<WaitingFor>,
    last_error: Option<String>,
}

fn lines(rows: Vec<DeliveryRow>, zones: &Zones, lang: Lang) -> Vec<DeliveryLine> {
    rows.into_iter()
        .map(|d| DeliveryLine {
            id: d.id,
            created: zones.show(d.scenario_id, d.created_at),
            scenario: zones.name(d.scenario_id).to_owned(),
            next_attempt: d
                .next_attempt_at
                .filter(|_| d.state == DeliveryState::Pending)
                .map(|at| zones.show(d.scenario_id, at)),
            waiting_for: match (d.state, d.blocked_by, d.parked) {
                (DeliveryState::Pending, Some(_), _) => Some(WaitingFor::DuringCall),
                (DeliveryState::Pending, None, true) => Some(WaitingFor::Endpoint),
                _ => None,
            },
            call_href: d.call_id.as_deref().map(|c| super::urls::call(c, lang)),
            call_id: d.call_id,
            kind: d.kind,
            state: d.state,
            attempts: d.attempt_count,
            last_error: callhook_core::delivery::failure_text(
                d.last_status,
                d.last_error.as_deref(),
            ),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "console/deliveries.html")]
struct DeliveriesPage<'a> {
    lang: Lang,
    csrf: String,
    actor: String,
    q: &'a DeliveriesQuery,
    scenarios: Vec<(String, String)>,
    states: &'static [DeliveryState],
    kinds: &'static [DeliveryKind],
    /// The zone the range is read in.
    zone: &'static str,
    /// A filter that could not be read.
    error: Option<ShownError>,
    rows: Vec<DeliveryLine>,
    /// The query of the next (older) page.
    next: Option<String>,
    /// The first live poll's query, on a page that shows the newest rows.
    live: Option<String>,
}

/// The ids at or above the horizon `h` (the next window's), comma-separated.
fn live_seen(ids: impl Iterator<Item = Uuid>, h: DateTime<Utc>) -> String {
    let edge = log::id_before(h);
    ids.filter(|id| *id >= edge)
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A live window's edge: the horizon, to the millisecond the ids carry.
async fn horizon(state: &AppState) -> Result<DateTime<Utc>, ConsoleError> {
    let h = log::live_horizon(&state.pool).await?;
    Ok(DateTime::from_timestamp_millis(h.timestamp_millis()).unwrap_or(h))
}

pub(super) async fn deliveries_page(
    State(state): State<AppState>,
    Query(q): Query<DeliveriesQuery>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, ConsoleError> {
    let all = scenarios::list(&state.pool).await?;
    let zones = Zones::of(&all);
    let mut view = DeliveriesPage {
        lang,
        csrf: key(&state).csrf(&s.session),
        actor: s.actor.0,
        q: &q,
        scenarios: all
            .iter()
            .map(|sc| (sc.id.to_string(), sc.name.clone()))
            .collect(),
        states: DeliveryState::ALL,
        kinds: DeliveryKind::ALL,
        zone: Timezone::UTC.name(),
        error: None,
        rows: Vec::new(),
        next: None,
        live: None,
    };
    let (filter, zone) = match q.parse(&zones) {
        Ok(parsed) => parsed,
        Err(e) => {
            view.error = Some(lang.field_error(&e));
            let mut r = page(render(&view)?, vec![s.renewed]);
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(r);
        }
    };
    view.zone = zone.name();
    let after = match q.after.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => Some(decode_cursor(a)?),
        None => None,
    };
    // The newest page polls for what comes after the horizon.
    let live_from = match after {
        Some(_) => None,
        None => Some(horizon(&state).await?).filter(|h| filter.until.is_none_or(|u| u > *h)),
    };
    let mut rows = log::list(&state.pool, &filter, after, PAGE as i64 + 1).await?;
    if let Some(h) = live_from {
        let seen = live_seen(rows.iter().map(|d| d.id), h);
        view.live = Some(q.link(
            lang,
            &[("from", &h.timestamp_millis().to_string()), ("seen", &seen)],
        ));
    }
    if rows.len() > PAGE {
        rows.truncate(PAGE);
        let last = rows.last().expect("a full page").id;
        view.next = Some(q.link(lang, &[("after", &encode_cursor(last))]));
    }
    view.rows = lines(rows, &zones, lang);
    Ok(page(render(&view)?, vec![s.renewed]))
}

#[derive(Template)]
#[template(path = "console/deliveries_live.html")]
struct LiveRows {
    lang: Lang,
    /// The next poll's query; `None` when the window overflowed.
    poll: Option<String>,
    /// The page to reload to, when the window overflowed.
    reload: String,
    rows: Vec<DeliveryLine>,
}

/// One live poll: the rows of the window `[from, horizon)` and the poller
/// of the next window, as a fragment that replaces the poller.
pub(super) async fn deliveries_live(
    State(state): State<AppState>,
    Query(q): Query<DeliveriesQuery>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, ConsoleError> {
    let Some(from) = q.from.and_then(DateTime::from_timestamp_millis) else {
        let e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "required",
            "from (milliseconds) is required",
        );
        return Err(e.with_field("from").into());
    };
    let zones = Zones::load(&state.pool).await?;
    let (filter, _) = q.parse(&zones)?;
    let seen: Vec<Uuid> = q
        .seen
        .split(',')
        .filter_map(|id| id.trim().parse().ok())
        .collect();
    let to = horizon(&state).await?.max(from);
    let limit = (PAGE + 1 + seen.len()) as i64;
    let mut rows = log::list_window(&state.pool, &filter, from, to, limit).await?;
    rows.retain(|d| !seen.contains(&d.id));
    let overflow = rows.len() > PAGE;
    if overflow {
        rows.clear();
    }
    let next_from = to.timestamp_millis().to_string();
    let still_seen = live_seen(seen.iter().copied(), to);
    let view = LiveRows {
        lang,
        poll: (!overflow).then(|| q.link(lang, &[("from", &next_from), ("seen", &still_seen)])),
        reload: q.link(lang, &[]),
        rows: lines(rows, &zones, lang),
    };
    Ok(page(render(&view)?, vec![s.renewed]))
}
