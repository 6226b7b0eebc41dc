//! The scenario form: create, edit, preview, rotate the secret, delete. It
//! goes through the same input checks as `PUT /api/v1/scenarios/{id}`
//! (`ScenarioInput`), so an error names the same field.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use callhook_core::{
    build_payload, CustomFields, DeliveryKind, FieldError, SigningSecret, Timezone,
};
use callhook_store::scenarios::{self, Scenario};
use serde::Deserialize;
use uuid::Uuid;

use super::i18n::Lang;
use super::{key, page, redirect_with, render, CsrfField, CsrfForm, SignedForm, SignedPage};
use crate::routes::audit::{self, Action};
use crate::AppState;

mod test_send;
mod text;

pub(super) use test_send::test_send;
use test_send::Tested;
use text::ScenarioFormData;

#[derive(Template)]
#[template(path = "console/scenario.html")]
struct ScenarioPage<'a> {
    lang: Lang,
    csrf: String,
    actor: String,
    id: Option<Uuid>,
    form: &'a ScenarioFormData,
    error: Option<FieldError>,
    previews: Vec<(&'static str, String)>,
    preview_error: Option<FieldError>,
    secret: String,
    tested: Option<Tested>,
    /// The payload's fields a custom field's value may name.
    placeholders: Vec<&'static str>,
}

/// The exact bodies each webhook carries with these custom fields in this
/// zone (the page's example call), in the page's key order.
fn previews_of(fields: &CustomFields, tz: Timezone) -> Vec<(&'static str, String)> {
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
            (k.as_str(), pretty)
        })
        .collect()
}

/// The previews of what the form says now, or the error that stops them.
fn previews_of_form(form: &ScenarioFormData) -> Result<Vec<(&'static str, String)>, FieldError> {
    let (fields, tz) = form.input().payload_parts()?;
    Ok(previews_of(&fields, tz))
}

#[derive(Template)]
#[template(path = "console/previews.html")]
struct Previews {
    lang: Lang,
    previews: Vec<(&'static str, String)>,
    preview_error: Option<FieldError>,
}

/// The live preview (htmx posts the form as it is typed): the bodies, or
/// the error at the field that stops them. Nothing is saved.
pub(super) async fn preview(
    State(_state): State<AppState>,
    SignedForm { lang, s, form }: SignedForm<ScenarioFormData>,
) -> Response {
    let (previews, preview_error) = match previews_of_form(&form) {
        Ok(p) => (p, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    page(
        render(&Previews {
            lang,
            previews,
            preview_error,
        }),
        vec![s.renewed],
    )
}

#[expect(clippy::too_many_arguments, reason = "a page's parts, each one plain")]
fn form_page(
    state: &AppState,
    lang: Lang,
    session: &super::session::Session,
    actor: String,
    id: Option<Uuid>,
    form: &ScenarioFormData,
    error: Option<FieldError>,
    scenario: Option<&Scenario>,
) -> String {
    form_page_tested(state, lang, session, actor, id, form, error, scenario, None)
}

#[expect(clippy::too_many_arguments, reason = "a page's parts, each one plain")]
fn form_page_tested(
    state: &AppState,
    lang: Lang,
    session: &super::session::Session,
    actor: String,
    id: Option<Uuid>,
    form: &ScenarioFormData,
    error: Option<FieldError>,
    scenario: Option<&Scenario>,
    tested: Option<Tested>,
) -> String {
    render(&ScenarioPage {
        lang,
        csrf: key(state).csrf(session),
        actor,
        id,
        form,
        error,
        previews: previews_of_form(form)
            .ok()
            .or_else(|| scenario.and_then(|s| Some(previews_of(&s.fields(), s.tz().ok()?))))
            .unwrap_or_default(),
        preview_error: None,
        secret: scenario
            .and_then(|s| state.sealer.reveal(&s.signing_secret).ok())
            .unwrap_or_default(),
        tested,
        placeholders: callhook_core::payload::placeholder_fields().collect(),
    })
}

pub(super) async fn new_page(
    State(state): State<AppState>,
    SignedPage { lang, s }: SignedPage,
) -> Response {
    let form = ScenarioFormData {
        timezone: "Europe/Moscow".into(),
        ..ScenarioFormData::default()
    };
    page(
        form_page(
            &state,
            lang,
            &s.session,
            s.actor.0.clone(),
            None,
            &form,
            None,
            None,
        ),
        vec![s.renewed],
    )
}

pub(super) async fn edit_page(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    SignedPage { lang, s }: SignedPage,
) -> Result<Response, crate::ApiError> {
    let Ok(scenario) = scenarios::get(&state.pool, id).await else {
        return Ok((StatusCode::NOT_FOUND, lang.t("not_found")).into_response());
    };
    let form = ScenarioFormData::from_scenario(&scenario);
    Ok(page(
        form_page(
            &state,
            lang,
            &s.session,
            s.actor.0.clone(),
            Some(id),
            &form,
            None,
            Some(&scenario),
        ),
        vec![s.renewed],
    ))
}

/// Creates (`id` none) or saves a scenario from the form; the form again,
/// with the error at its field, when the input is refused.
async fn submit(
    state: AppState,
    id: Option<Uuid>,
    SignedForm { lang, s, form }: SignedForm<ScenarioFormData>,
) -> Result<Response, crate::ApiError> {
    let refused = |error: FieldError, scenario: Option<&Scenario>| {
        let mut r = page(
            form_page(
                &state,
                lang,
                &s.session,
                s.actor.0.clone(),
                id,
                &form,
                Some(error),
                scenario,
            ),
            vec![s.renewed.clone()],
        );
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        r
    };
    let settings = match form.input().into_settings() {
        Ok(settings) => settings,
        Err(e) => {
            let current = match id {
                Some(id) => scenarios::get(&state.pool, id).await.ok(),
                None => None,
            };
            return Ok(refused(e, current.as_ref()));
        }
    };
    let saved = match id {
        None => {
            let secret = state.sealer.seal(&SigningSecret::generate());
            scenarios::create(&state.pool, &settings, &secret).await
        }
        Some(id) => scenarios::update(&state.pool, id, &settings, &state.settings.health)
            .await
            .map(|(s, _)| s),
    };
    let scenario = match saved {
        Ok(sc) => sc,
        Err(callhook_store::StoreError::NumberTaken {
            number,
            scenario_id,
        }) => {
            let e = FieldError::new(
                "numbers",
                "number_taken",
                format!("number {number} already belongs to scenario {scenario_id}; remove it there first"),
            );
            return Ok(refused(e, None));
        }
        Err(e) => return Err(e.into()),
    };
    let (action, details) = match id {
        None => (
            Action::ScenarioCreate,
            serde_json::json!({"name": scenario.name, "via": "console"}),
        ),
        Some(_) => (
            Action::ScenarioSave,
            serde_json::json!({"during_call_url": scenario.during_call_url,
                               "after_call_url": scenario.after_call_url, "via": "console"}),
        ),
    };
    audit::record(&state, &s.actor, action, Some(scenario.id), details).await;
    Ok(redirect_with(
        &format!("/console/scenarios/{}?lang={}", scenario.id, lang.code()),
        &s.renewed,
    ))
}

pub(super) async fn create(
    State(state): State<AppState>,
    signed: SignedForm<ScenarioFormData>,
) -> Result<Response, crate::ApiError> {
    submit(state, None, signed).await
}

pub(super) async fn save(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    signed: SignedForm<ScenarioFormData>,
) -> Result<Response, crate::ApiError> {
    submit(state, Some(id), signed).await
}

pub(super) async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    SignedForm { lang, s, form: _ }: SignedForm<CsrfForm>,
) -> Result<Response, crate::ApiError> {
    let secret = state.sealer.seal(&SigningSecret::generate());
    let sc = scenarios::rotate_secret(
        &state.pool,
        id,
        &secret,
        state.settings.secret_rotation_overlap,
    )
    .await?;
    audit::record(
        &state,
        &s.actor,
        Action::SecretRotate,
        Some(id),
        serde_json::json!({"previous_secret_expires_at": sc.previous_secret_expires_at, "via": "console"}),
    )
    .await;
    Ok(redirect_with(
        &format!("/console/scenarios/{id}?lang={}", lang.code()),
        &s.renewed,
    ))
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
) -> Result<Response, crate::ApiError> {
    if form.confirm != "yes" {
        return Ok(redirect_with(
            &format!("/console/scenarios/{id}?lang={}", lang.code()),
            &s.renewed,
        ));
    }
    let cancelled = scenarios::delete(&state.pool, id).await?;
    audit::record(
        &state,
        &s.actor,
        Action::ScenarioDelete,
        Some(id),
        serde_json::json!({"cancelled": cancelled.len(), "via": "console"}),
    )
    .await;
    Ok(redirect_with(
        &format!("/console?lang={}", lang.code()),
        &s.renewed,
    ))
}
