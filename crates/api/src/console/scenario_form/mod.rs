//! The scenario form: create, edit, preview, rotate the secret, delete. It
//! goes through the same input checks as `PUT /api/v1/scenarios/{id}`
//! (`ScenarioInput`), so an error names the same field. The delivery rules
//! are rows ([`rows`]), their dry run [`dry_run`]'s.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use callhook_core::filter::{self, Op};
use callhook_core::{
    build_payload, CustomFields, DeliveryKind, EndpointKind, FieldError, Timezone,
};
use callhook_store::scenarios::{self, Scenario};
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::{Lang, ShownError};
use super::urls::Page;
use super::{
    key, page, redirect_with, render, ConsoleError, CsrfField, CsrfForm, Signed, SignedForm,
    SignedPage,
};
use crate::ops::{self, scenario_error};
use crate::{ApiError, AppState};

mod dry_run;
mod rows;
mod test_send;
mod text;

pub(super) use dry_run::dry_run_fragment;
use dry_run::DryRun;
use rows::RowEdit;
pub(super) use test_send::test_send;
use test_send::Tested;
pub(crate) use text::ScenarioField;
use text::ScenarioFormData;

#[derive(Template)]
#[template(path = "console/scenario.html")]
struct ScenarioPage<'a> {
    lang: Lang,
    csrf: String,
    actor: String,
    id: Option<Uuid>,
    form: &'a ScenarioFormData,
    /// Every refused field's error, in the form's order.
    errors: Vec<ShownError>,
    previews: Vec<(DeliveryKind, String)>,
    preview_error: Option<ShownError>,
    secret: String,
    tested: Option<Tested>,
    /// The payload's fields a custom field's value may name.
    placeholders: Vec<&'static str>,
    /// Just saved (the page a save redirects to says so).
    saved: bool,
    /// The test send's buttons.
    test_kinds: [EndpointKind; 2],
    /// The conditions' dry run over the scenario's last calls.
    dry_run: DryRun,
}

impl ScenarioPage<'_> {
    /// The fields a condition of the webhook of `kind` may name.
    fn condition_fields(&self, kind: &EndpointKind) -> Vec<&'static str> {
        filter::fields(*kind).collect()
    }

    /// Whether a condition row's field is one the picker offers (else it
    /// is added to the picker, as typed, for the check to refuse).
    fn offered(&self, kind: &EndpointKind, field: &str) -> bool {
        filter::fields(*kind).any(|f| f == field)
    }

    fn ops(&self) -> &'static [Op] {
        Op::ALL
    }

    /// The errors about a list of rows that no row shows (the list's own:
    /// too many; its JSON).
    fn list_errors(&self, field: &ScenarioField) -> Vec<&ShownError> {
        let at = self.form.rules.row_names(*field);
        self.errors
            .iter()
            .filter(|e| e.is_at(field.name()) && !at.iter().any(|a| e.is_at_item(a)))
            .collect()
    }
}

/// The exact bodies each webhook carries with these custom fields in this
/// zone (the page's example call), in the page's key order.
fn previews_of(fields: &CustomFields, tz: Timezone) -> Vec<(DeliveryKind, String)> {
    DeliveryKind::CALL_KINDS
        .iter()
        .map(|k| {
            let call = callhook_core::payload::example_call(
                tz,
                *k == DeliveryKind::AfterCall,
                chrono::Utc::now(),
            );
            let bytes = build_payload(&call, *k, fields, tz);
            let pretty = serde_json::from_slice::<serde_json::Value>(&bytes)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            (*k, pretty)
        })
        .collect()
}

/// The previews of what the form says now, or the error that stops them.
fn previews_of_form(form: &ScenarioFormData) -> Result<Vec<(DeliveryKind, String)>, FieldError> {
    let (input, unread) = form.input();
    if let Some(e) = unread.into_iter().next() {
        return Err(e);
    }
    let (fields, tz) = input.payload_parts()?;
    Ok(previews_of(&fields, tz))
}

#[derive(Template)]
#[template(path = "console/previews.html")]
struct Previews {
    lang: Lang,
    previews: Vec<(DeliveryKind, String)>,
    preview_error: Option<ShownError>,
}

/// The live preview (htmx posts the form as it is typed): the bodies, or
/// the error at the field that stops them. Nothing is saved.
pub(super) async fn preview(
    State(_state): State<AppState>,
    SignedForm { lang, s, form }: SignedForm<ScenarioFormData>,
) -> Result<Response, ConsoleError> {
    let (previews, preview_error) = match previews_of_form(&form) {
        Ok(p) => (p, None),
        Err(e) => (Vec::new(), Some(lang.field_error(&e))),
    };
    let html = render(&Previews {
        lang,
        previews,
        preview_error,
    })?;
    Ok(page(html, vec![s.renewed]))
}

/// What a render of the scenario page shows beside the form.
#[derive(Default)]
struct Shown<'a> {
    /// Why the last save was refused: every field's error.
    errors: Vec<ShownError>,
    /// The scenario as stored (its secret; its previews when the form's
    /// own cannot be built).
    scenario: Option<&'a Scenario>,
    /// A test send's outcome.
    tested: Option<Tested>,
    /// The page follows a save.
    saved: bool,
    /// The conditions' dry run (a new scenario: none).
    dry_run: DryRun,
}

/// The scenario page: the form (`id` none: a new scenario) and what
/// `shown` adds.
fn form_page(
    state: &AppState,
    lang: Lang,
    s: &Signed,
    id: Option<Uuid>,
    form: &ScenarioFormData,
    shown: Shown<'_>,
) -> Result<String, ConsoleError> {
    let scenario = shown.scenario;
    render(&ScenarioPage {
        lang,
        csrf: key(state).csrf(&s.session),
        actor: s.actor.0.clone(),
        id,
        form,
        errors: shown.errors,
        previews: previews_of_form(form)
            .ok()
            .or_else(|| scenario.and_then(|s| Some(previews_of(&s.fields(), s.tz().ok()?))))
            .unwrap_or_default(),
        preview_error: None,
        secret: scenario
            .and_then(|s| state.sealer.reveal(&s.signing_secret, s.id).ok())
            .unwrap_or_default(),
        tested: shown.tested,
        placeholders: callhook_core::payload::placeholder_fields().collect(),
        saved: shown.saved,
        test_kinds: EndpointKind::ALL,
        dry_run: shown.dry_run,
    })
}

pub(super) async fn new_page(
    State(state): State<AppState>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, ConsoleError> {
    let form = ScenarioFormData {
        timezone: "Europe/Moscow".into(),
        ..ScenarioFormData::default()
    };
    let shown = Shown {
        dry_run: DryRun::New,
        ..Shown::default()
    };
    let html = form_page(&state, lang, &s, None, &form, shown)?;
    Ok(page(html, vec![s.renewed]))
}

/// `?saved=1`: the page a save redirects to.
#[derive(Debug, Deserialize)]
pub(super) struct SavedQuery {
    #[serde(default)]
    saved: Option<String>,
}

pub(super) async fn edit_page(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(q): Query<SavedQuery>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, ConsoleError> {
    let scenario = scenarios::get(&state.pool, id)
        .await
        .map_err(scenario_error(id))?;
    let form = ScenarioFormData::from_scenario(&scenario);
    let shown = Shown {
        scenario: Some(&scenario),
        saved: q.saved.as_deref() == Some("1"),
        dry_run: dry_run::run(&state, lang, Some(id), &form).await?,
        ..Shown::default()
    };
    let html = form_page(&state, lang, &s, Some(id), &form, shown)?;
    Ok(page(html, vec![s.renewed]))
}

/// The form again after a row button (`edit`): a row added or removed,
/// or the dry run asked for. Nothing is saved.
async fn edited(
    state: &AppState,
    id: Option<Uuid>,
    SignedForm { lang, s, mut form }: SignedForm<ScenarioFormData>,
    edit: RowEdit,
) -> Result<Response, ConsoleError> {
    form.rules.edit(edit);
    let current = match id {
        Some(id) => Some(
            scenarios::get(&state.pool, id)
                .await
                .map_err(scenario_error(id))?,
        ),
        None => None,
    };
    let shown = Shown {
        scenario: current.as_ref(),
        dry_run: dry_run::run(state, lang, id, &form).await?,
        ..Shown::default()
    };
    let html = form_page(state, lang, &s, id, &form, shown)?;
    Ok(page(html, vec![s.renewed]))
}

/// Creates (`id` none) or saves a scenario from the form
/// (`ops::scenarios`); the form again, with the error at its field, when
/// the input is refused; the form again, edited, for a row button.
async fn submit(
    state: AppState,
    id: Option<Uuid>,
    signed: SignedForm<ScenarioFormData>,
) -> Result<Response, ConsoleError> {
    if let Some(edit) = RowEdit::parse(&signed.form.edit) {
        return edited(&state, id, signed, edit).await;
    }
    let SignedForm { lang, s, form } = signed;
    let done = match (form.input(), id) {
        // Text the form cannot read, with every other field's error.
        ((input, unread), _) if !unread.is_empty() => {
            let mut errors = input
                .check(state.settings.max_payload_bytes)
                .err()
                .unwrap_or_default();
            errors.retain(|e| !unread.iter().any(|u| e.field.starts_with(&u.field)));
            errors.extend(unread);
            Err(ApiError::from(errors))
        }
        ((input, _), None) => ops::scenarios::create(&state, &s.actor, input).await,
        ((input, _), Some(id)) => ops::scenarios::save(&state, &s.actor, id, input).await,
    };
    let e = match done {
        Ok(sc) => {
            let to = Page::Scenario {
                id: sc.id,
                saved: true,
            }
            .href(lang);
            return Ok(redirect_with(&to, &s.renewed));
        }
        Err(e) => e,
    };
    // Refused input (a 422, or a number another scenario holds): the form
    // again with the error at its field; anything else is an error page.
    let Some(field) = e.field.clone().filter(|_| e.status.is_client_error()) else {
        return Err(e.into());
    };
    let current = match id {
        Some(id) => scenarios::get(&state.pool, id).await.ok(),
        None => None,
    };
    let shown = Shown {
        errors: {
            let mut all: Vec<FieldError> =
                std::iter::once(FieldError::new(field, e.code, e.message))
                    .chain(e.more)
                    .collect();
            all.sort_by_key(|e| form.position(&e.field));
            all.iter().map(|e| form.shown_error(lang, e)).collect()
        },
        scenario: current.as_ref(),
        dry_run: dry_run::run(&state, lang, id, &form).await?,
        ..Shown::default()
    };
    let mut r = page(
        form_page(&state, lang, &s, id, &form, shown)?,
        vec![s.renewed.clone()],
    );
    *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(r)
}

pub(super) async fn create(
    State(state): State<AppState>,
    signed: SignedForm<ScenarioFormData>,
) -> Result<Response, ConsoleError> {
    submit(state, None, signed).await
}

pub(super) async fn save(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    signed: SignedForm<ScenarioFormData>,
) -> Result<Response, ConsoleError> {
    submit(state, Some(id), signed).await
}

pub(super) async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    SignedForm { lang, s, form: _ }: SignedForm<CsrfForm>,
) -> Result<Response, ConsoleError> {
    ops::scenarios::rotate_secret(&state, &s.actor, id).await?;
    let to = Page::Scenario { id, saved: false }.href(lang);
    Ok(redirect_with(&to, &s.renewed))
}

#[derive(Debug, Deserialize)]
pub(super) struct DeleteForm {
    csrf: String,
    #[serde(default)]
    confirm: String,
}

impl CsrfField for DeleteForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    SignedForm { lang, s, form }: SignedForm<DeleteForm>,
) -> Result<Response, ConsoleError> {
    if form.confirm != "yes" {
        return Ok(redirect_with(
            &Page::Scenario { id, saved: false }.href(lang),
            &s.renewed,
        ));
    }
    ops::scenarios::delete(&state, &s.actor, id).await?;
    Ok(redirect_with(&Page::Scenarios.href(lang), &s.renewed))
}
