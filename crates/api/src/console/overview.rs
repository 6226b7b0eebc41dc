//! The scenarios list and the endpoints' health page.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use callhook_core::{DeliveryKind, EndpointState, FieldError};
use callhook_store::{health, log, scenarios};
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::Lang;
use super::time::Zones;
use super::urls::Page;
use super::{
    key, page, redirect_with, render, ConsoleError, CsrfField, CsrfForm, SignedForm, SignedPage,
};
use crate::ops::endpoints::{kind_param, EndpointAction, LimitsBody};
use crate::ops::{self, scenario_error};
use crate::AppState;

/// A scenario row of the list.
struct ScenarioRow {
    id: Uuid,
    name: String,
    numbers: String,
    during_url: Option<String>,
    after_url: Option<String>,
    during_state: EndpointState,
    after_state: EndpointState,
    delivered_24h: i64,
    failed_24h: i64,
    last_error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/scenarios.html")]
struct ScenariosPage {
    lang: Lang,
    csrf: String,
    actor: String,
    rows: Vec<ScenarioRow>,
}

pub(super) async fn scenarios_page(
    State(state): State<AppState>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, ConsoleError> {
    let all = scenarios::list(&state.pool).await?;
    let ids: Vec<Uuid> = all.iter().map(|s| s.id).collect();
    let endpoints = health::of_scenarios(&state.pool, &ids).await?;
    let since = chrono::Utc::now() - chrono::Duration::hours(24);
    let summaries = log::summaries_since(&state.pool, since).await?;
    let state_of = |id: Uuid, kind: DeliveryKind| {
        endpoints
            .iter()
            .find(|e| e.scenario_id == id && e.kind == kind)
            .map_or(EndpointState::Healthy, |e| e.state)
    };
    let rows = all
        .into_iter()
        .map(|sc| {
            let sum = summaries.iter().find(|x| x.scenario_id == sc.id);
            ScenarioRow {
                id: sc.id,
                during_state: state_of(sc.id, DeliveryKind::DuringCall),
                after_state: state_of(sc.id, DeliveryKind::AfterCall),
                name: sc.name,
                numbers: sc.numbers.join(", "),
                during_url: sc.during_call_url,
                after_url: sc.after_call_url,
                delivered_24h: sum.map_or(0, |x| x.delivered),
                failed_24h: sum.map_or(0, |x| x.failed),
                last_error: sum.and_then(|x| x.last_error.clone()),
            }
        })
        .collect();
    Ok(page(
        render(&ScenariosPage {
            lang,
            csrf: key(&state).csrf(&s.session),
            actor: s.actor.0,
            rows,
        })?,
        vec![s.renewed],
    ))
}

/// An endpoint row of the health page.
struct EndpointRow {
    scenario_id: Uuid,
    scenario_name: String,
    kind: DeliveryKind,
    url: Option<String>,
    state: EndpointState,
    since: String,
    last_error: Option<String>,
    /// When the last error is from before a recovery: the recovery's time
    /// (a success since, no failure after it).
    recovered_at: Option<String>,
    waiting: i64,
    due: i64,
    in_flight: i64,
    /// The in-flight cap in force (its own, the default, or lowered).
    cap: i32,
    max_per_second: Option<f32>,
    /// What its button does.
    action: EndpointAction,
    /// Its own limits as the form shows them (empty: none of its own).
    own_cap: String,
    own_rate: String,
}

#[derive(Template)]
#[template(path = "console/health.html")]
struct HealthPage {
    lang: Lang,
    csrf: String,
    actor: String,
    rows: Vec<EndpointRow>,
    /// The process's default cap (`CALLHOOK_ENDPOINT_MAX_IN_FLIGHT`, else four
    /// times `CALLHOOK_CONCURRENCY`), for an endpoint with no cap of its own.
    default_cap: i32,
}

pub(super) async fn health_page(
    State(state): State<AppState>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, ConsoleError> {
    let zones = Zones::load(&state.pool).await?;
    let rows = health::list(&state.pool, None)
        .await?
        .into_iter()
        .map(|e| EndpointRow {
            scenario_id: e.scenario_id,
            scenario_name: e.scenario_name,
            kind: e.kind,
            url: e.url,
            state: e.state,
            since: zones.show(Some(e.scenario_id), e.since),
            recovered_at: e
                .last_success_at
                .filter(|_| e.consecutive_failures == 0 && e.last_error.is_some())
                .map(|at| zones.show(Some(e.scenario_id), at)),
            last_error: e.last_error,
            waiting: e.deliveries_waiting,
            due: e.deliveries_due,
            in_flight: e.deliveries_in_flight,
            cap: e.cap.unwrap_or(state.settings.health.endpoint_cap),
            max_per_second: e.max_per_second,
            own_cap: e.max_in_flight.map(|n| n.to_string()).unwrap_or_default(),
            own_rate: e.max_per_second.map(|r| r.to_string()).unwrap_or_default(),
            action: if e.state.holds_deliveries() {
                EndpointAction::Enable
            } else {
                EndpointAction::Pause
            },
        })
        .collect();
    Ok(page(
        render(&HealthPage {
            lang,
            csrf: key(&state).csrf(&s.session),
            actor: s.actor.0,
            rows,
            default_cap: state.settings.health.endpoint_cap,
        })?,
        vec![s.renewed],
    ))
}

pub(super) async fn switch_endpoint(
    State(state): State<AppState>,
    Path((id, kind, action)): Path<(Uuid, String, String)>,
    SignedForm { lang, s, form: _ }: SignedForm<CsrfForm>,
) -> Result<Response, ConsoleError> {
    let kind = kind_param(&kind)?;
    let action = EndpointAction::parse(&action)
        .ok_or_else(|| ConsoleError::not_found(format!("no such endpoint action: {action}")))?;
    ops::endpoints::switch(&state, &s.actor, id, kind, action).await?;
    Ok(redirect_with(&Page::Health.href(lang), &s.renewed))
}

/// "Send now" on an endpoint's row: what waits for a retry goes now.
pub(super) async fn send_now(
    State(state): State<AppState>,
    Path((id, kind)): Path<(Uuid, String)>,
    SignedForm { lang, s, form: _ }: SignedForm<CsrfForm>,
) -> Result<Response, ConsoleError> {
    let kind = kind_param(&kind)?;
    ops::endpoints::send_now(&state, &s.actor, id, kind).await?;
    Ok(redirect_with(&Page::Health.href(lang), &s.renewed))
}

/// The limits form of an endpoint's row: empty is "none of its own".
#[derive(Debug, Deserialize)]
pub(super) struct LimitsForm {
    csrf: String,
    #[serde(default)]
    max_in_flight: String,
    #[serde(default)]
    max_per_second: String,
}

impl CsrfField for LimitsForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl LimitsForm {
    /// The API's input; a number that does not read is an error at its field.
    fn input(&self) -> Result<LimitsBody, FieldError> {
        fn number<T: std::str::FromStr>(text: &str, field: &str) -> Result<Option<T>, FieldError> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse().map(Some).map_err(|_| {
                FieldError::new(
                    field,
                    "invalid_number",
                    format!("{field} must be a number, or empty"),
                )
            })
        }
        Ok(LimitsBody {
            max_in_flight: number(&self.max_in_flight, "max_in_flight")?,
            max_per_second: number(&self.max_per_second, "max_per_second")?,
        })
    }
}

/// Sets an endpoint's own limits from its row on the health page.
pub(super) async fn set_limits(
    State(state): State<AppState>,
    Path((id, kind)): Path<(Uuid, String)>,
    SignedForm { lang, s, form }: SignedForm<LimitsForm>,
) -> Result<Response, ConsoleError> {
    let kind = kind_param(&kind)?;
    let input = form.input()?;
    ops::endpoints::set_limits(&state, &s.actor, id, kind, &input).await?;
    Ok(redirect_with(&Page::Health.href(lang), &s.renewed))
}

/// A pool number's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberState {
    /// Held for a visit.
    Reserved,
    /// In the pool, held for no one.
    Free,
    /// A static number (not the pool's to hand out).
    Static,
}

struct NumberLine {
    number: String,
    state: NumberState,
    visit: String,
    until: String,
}

#[derive(Template)]
#[template(path = "console/pool.html")]
struct PoolPage {
    lang: Lang,
    csrf: String,
    actor: String,
    name: String,
    size: i64,
    reserved: i64,
    free: i64,
    shared_today: i64,
    numbers: Vec<NumberLine>,
}

/// A scenario's number pool: reserved, free, shared today.
pub(super) async fn pool_page(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, ConsoleError> {
    let scenario = scenarios::get(&state.pool, id)
        .await
        .map_err(scenario_error(id))?;
    let zone = scenario.tz()?;
    let p = callhook_store::pool::status(&state.pool, id).await?;
    let numbers = p
        .numbers
        .into_iter()
        .map(|n| {
            let state = if n.is_static {
                NumberState::Static
            } else if n.reserved_until.is_some() {
                NumberState::Reserved
            } else {
                NumberState::Free
            };
            NumberLine {
                number: n.number,
                state,
                visit: n.visit_id.unwrap_or_default(),
                until: n
                    .reserved_until
                    .map(|t| zone.format_with_offset(t))
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok(page(
        render(&PoolPage {
            lang,
            csrf: key(&state).csrf(&s.session),
            actor: s.actor.0,
            name: scenario.name,
            size: p.size,
            reserved: p.reserved_now,
            free: p.size - p.reserved_now,
            shared_today: p.shared_today,
            numbers,
        })?,
        vec![s.renewed],
    ))
}
