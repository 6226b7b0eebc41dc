//! A test send from the form: the signed request and the receiver's answer,
//! shown inline on the scenario's page (`ops::test_send`, as the API's).

use axum::extract::{Path, State};
use axum::response::Response;
use callhook_core::EndpointKind;
use callhook_store::scenarios;
use serde::Deserialize;
use uuid::Uuid;

use super::text::ScenarioFormData;
use super::{form_page, page, ConsoleError, CsrfField, Shown, SignedForm};
use crate::ops::{self, scenario_error};
use crate::AppState;

/// A test send's outcome, shown inline.
pub(super) struct Tested {
    pub(super) kind: EndpointKind,
    pub(super) url: String,
    pub(super) ok: bool,
    pub(super) outcome: String,
    pub(super) duration_ms: i32,
    pub(super) body: String,
    /// The signed request as sent: request line, headers, body.
    pub(super) request: String,
}

#[derive(Debug, Deserialize)]
pub(in crate::console) struct TestForm {
    csrf: String,
    kind: String,
}

impl CsrfField for TestForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A test send from the form: the scenario page again with the outcome.
pub(in crate::console) async fn test_send(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    SignedForm { lang, s, form }: SignedForm<TestForm>,
) -> Result<Response, ConsoleError> {
    let kind = EndpointKind::parse(&form.kind, "kind")?;
    let scenario = scenarios::get(&state.pool, id)
        .await
        .map_err(scenario_error(id))?;
    let outcome = ops::test_send::run(&state, &s.actor, id, kind, None).await;
    let tested = match outcome {
        Ok(r) => Tested {
            kind,
            ok: r.status.is_some_and(|s| (200..300).contains(&s)),
            outcome: match (r.status, r.error) {
                (Some(status), _) => format!("HTTP {status}"),
                (None, Some(e)) => e,
                (None, None) => lang.labels().no_answer.to_owned(),
            },
            request: std::iter::once(format!("POST {}", r.url))
                .chain(r.request_headers.iter().map(|(k, v)| format!("{k}: {v}")))
                .chain([String::new(), r.payload])
                .collect::<Vec<_>>()
                .join("\n"),
            url: r.url,
            duration_ms: r.duration_ms,
            body: r
                .response_body
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect(),
        },
        Err(e) => Tested {
            kind,
            ok: false,
            outcome: {
                let shown = lang.error(e.field.as_deref(), e.code, &e.message);
                match shown.detail {
                    Some(detail) => format!("{} ({detail})", shown.text),
                    None => shown.text,
                }
            },
            request: String::new(),
            url: String::new(),
            duration_ms: 0,
            body: String::new(),
        },
    };
    let form = ScenarioFormData::from_scenario(&scenario);
    let shown = Shown {
        scenario: Some(&scenario),
        tested: Some(tested),
        ..Shown::default()
    };
    let html = form_page(&state, lang, &s, Some(id), &form, shown)?;
    Ok(page(html, vec![s.renewed]))
}
