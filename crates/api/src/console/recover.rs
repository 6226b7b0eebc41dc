//! Bulk recover: "resend everything failed for this scenario since T",
//! counted first, then confirmed.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use callhook_core::{DeliveryState, FieldError};
use callhook_store::log::DeliveryFilter;
use callhook_store::{log, scenarios};
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::Lang;
use super::time::{input_value, read_input, Zones};
use super::{key, page, render, ConsoleError, CsrfField, SignedForm, SignedPage};
use crate::ops::{self, scenario_error};
use crate::AppState;

#[derive(Template)]
#[template(path = "console/recover.html")]
struct RecoverPage {
    lang: Lang,
    csrf: String,
    actor: String,
    scenarios: Vec<(String, String)>,
    scenario_id: String,
    since: String,
    /// Counted, waiting for the confirmation.
    count: Option<i64>,
    /// Requeued.
    done: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RecoverForm {
    csrf: String,
    scenario_id: Uuid,
    since: String,
    #[serde(default)]
    confirm: String,
}

impl CsrfField for RecoverForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn recover_page_for(
    state: &AppState,
    s: &super::Signed,
    lang: Lang,
    form: Option<&RecoverForm>,
    count: Option<i64>,
    done: Option<u64>,
) -> Result<Response, ConsoleError> {
    let all = scenarios::list(&state.pool).await?;
    // A day ago, on the wall clock of the chosen (else the first) scenario.
    let zone = Zones::of(&all).zone(form.map(|f| f.scenario_id).or(all.first().map(|sc| sc.id)));
    let default_since = input_value(zone, chrono::Utc::now() - chrono::Duration::hours(24));
    let scenarios = all
        .into_iter()
        .map(|sc| (sc.id.to_string(), sc.name))
        .collect();
    Ok(page(
        render(&RecoverPage {
            lang,
            csrf: key(state).csrf(&s.session),
            actor: s.actor.0.clone(),
            scenarios,
            scenario_id: form.map(|f| f.scenario_id.to_string()).unwrap_or_default(),
            since: form.map_or(default_since, |f| f.since.clone()),
            count,
            done,
        })?,
        vec![s.renewed.clone()],
    ))
}

/// "Resend everything failed for this scenario since T": the form.
pub(super) async fn recover_page(
    State(state): State<AppState>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, ConsoleError> {
    recover_page_for(&state, &s, lang, None, None, None).await
}

/// The count first; with `confirm=yes`, the requeue.
pub(super) async fn recover(
    State(state): State<AppState>,
    SignedForm { lang, s, form }: SignedForm<RecoverForm>,
) -> Result<Response, ConsoleError> {
    // The moment is read on the scenario's wall clock.
    let id = form.scenario_id;
    let zone = scenarios::get(&state.pool, id)
        .await
        .map_err(scenario_error(id))?
        .tz()?;
    let since = match read_input(zone, &form.since, "since") {
        Ok(Some(since)) => since,
        Ok(None) => return Err(FieldError::new("since", "required", "since is required").into()),
        Err(e) => return Err(e.into()),
    };
    let filter = DeliveryFilter {
        scenario_id: Some(form.scenario_id),
        state: Some(DeliveryState::Failed),
        since: Some(since),
        ..DeliveryFilter::default()
    };
    if form.confirm != "yes" {
        let n = log::count_final(&state.pool, &filter).await?;
        return recover_page_for(&state, &s, lang, Some(&form), Some(n), None).await;
    }
    let n = ops::deliveries::retry_matching(&state, &s.actor, &filter).await?;
    recover_page_for(&state, &s, lang, Some(&form), None, Some(n)).await
}
