//! The dry run of the form's conditions: per webhook, how many of the
//! scenario's last 1,000 calls it would have been sent for, with a few call
//! ids on each side. It is `ops::filter_preview::run`, the operation
//! `POST /api/v1/scenarios/{id}/filter-preview` answers with, on the
//! conditions the rows say now: live (htmx posts the form as a condition
//! changes) or with the form's "Try" button. Nothing is saved.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use callhook_core::EndpointKind;
use uuid::Uuid;

use super::text::ScenarioFormData;
use crate::console::i18n::{Lang, ShownError};
use crate::console::{page, render, ConsoleError, SignedForm};
use crate::ops::filter_preview::{self, FilterOutcome, FilterPreviewInput};
use crate::AppState;

/// What the form shows of the dry run.
#[derive(Debug, Default)]
pub(super) enum DryRun {
    /// A new scenario: no calls to try conditions on.
    #[default]
    New,
    Ran(Ran),
    /// A condition the check refuses (the save would too).
    Refused(ShownError),
}

/// The outcome over the calls looked at.
#[derive(Debug)]
pub(super) struct Ran {
    /// Calls looked at (the scenario's last, at most 1,000).
    pub(super) calls: usize,
    /// Each webhook's outcome (the after-call one over calls that ended).
    pub(super) webhooks: [(EndpointKind, FilterOutcome); 2],
}

impl DryRun {
    pub(super) fn ran(&self) -> Option<&Ran> {
        match self {
            Self::Ran(r) => Some(r),
            _ => None,
        }
    }

    pub(super) fn refused(&self) -> Option<&ShownError> {
        match self {
            Self::Refused(e) => Some(e),
            _ => None,
        }
    }
}

/// The dry run of the conditions `form` says, for scenario `id` (none: a
/// new scenario, nothing to run).
pub(super) async fn run(
    state: &AppState,
    lang: Lang,
    id: Option<Uuid>,
    form: &ScenarioFormData,
) -> Result<DryRun, ConsoleError> {
    let Some(id) = id else {
        return Ok(DryRun::New);
    };
    let (input, unread) = form.input();
    let conditions = [EndpointKind::DuringCall, EndpointKind::AfterCall]
        .map(|k| super::ScenarioField::conditions(k).name());
    if let Some(e) = unread
        .iter()
        .find(|e| conditions.iter().any(|c| e.field.starts_with(c)))
    {
        return Ok(DryRun::Refused(form.shown_error(lang, e)));
    }
    let asked = FilterPreviewInput {
        during_call_filter: input.during_call_filter,
        after_call_filter: input.after_call_filter,
    };
    match filter_preview::run(state, id, asked).await {
        Ok(p) => Ok(DryRun::Ran(Ran {
            calls: p.calls,
            webhooks: [
                (EndpointKind::DuringCall, p.during_call),
                (EndpointKind::AfterCall, p.after_call),
            ],
        })),
        Err(e) if e.status.is_client_error() && e.field.is_some() => {
            let field = e.field.unwrap_or_default();
            let e = callhook_core::FieldError::new(field, e.code, e.message);
            Ok(DryRun::Refused(form.shown_error(lang, &e)))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "console/dry_run.html")]
struct DryRunPart {
    lang: Lang,
    dry_run: DryRun,
}

/// The dry run alone, for htmx to swap in as the conditions change.
pub(in crate::console) async fn dry_run_fragment(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    SignedForm { lang, s, form }: SignedForm<ScenarioFormData>,
) -> Result<Response, ConsoleError> {
    let dry_run = run(&state, lang, Some(id), &form).await?;
    let html = render(&DryRunPart { lang, dry_run })?;
    Ok(page(html, vec![s.renewed]))
}
