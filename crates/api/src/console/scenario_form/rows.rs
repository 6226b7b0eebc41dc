//! The delivery rules as the form's rows, to and from the API's input: a
//! row per condition (field, operator, value) and per header (name, value,
//! secret). Inputs are named as the API names their errors
//! (`after_call_filter[1].value`), so an error lands beside its row.
//!
//! A blank row is left out of what is saved; errors, which count the saved
//! items, are given back the row's number ([`Rules::shown_field`]). A stored
//! secret header's row shows "set" and an empty value: left empty, the
//! save sends `null` and the stored value is kept. A secret's value is
//! never written into the page, not even one typed into a form that comes
//! back unsaved. Conditions that rows
//! cannot show exactly (`Condition::fits_a_row`) are shown as read-only
//! JSON and sent back as they are, as custom fields are.

use std::collections::BTreeMap;

use callhook_core::{Condition, EndpointKind, FieldError, Header};
use serde::Deserialize;

use super::text::ScenarioField;

/// One condition's row, as typed.
#[derive(Debug, Clone, Default)]
pub(in crate::console) struct ConditionRow {
    pub(super) field: String,
    pub(super) op: String,
    pub(super) value: String,
}

impl ConditionRow {
    fn is_blank(&self) -> bool {
        self.field.trim().is_empty() && self.value.trim().is_empty()
    }
}

/// One webhook's conditions as the form holds them.
#[derive(Debug, Clone)]
pub(in crate::console) enum Conditions {
    Rows(Vec<ConditionRow>),
    /// Stored conditions rows cannot show exactly: their JSON, read-only.
    Json(String),
}

impl Default for Conditions {
    fn default() -> Self {
        Self::Rows(Vec::new())
    }
}

/// One header's row, as typed.
#[derive(Debug, Clone, Default)]
pub(in crate::console) struct HeaderRow {
    pub(super) name: String,
    pub(super) value: String,
    pub(super) secret: bool,
    /// A stored secret's row: an empty value keeps the stored one.
    pub(super) set: bool,
}

impl HeaderRow {
    fn is_blank(&self) -> bool {
        self.name.trim().is_empty() && self.value.is_empty()
    }
}

/// What a row button asks (the form's `edit`): nothing is saved, the form
/// comes back changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowEdit {
    /// A blank row at the end of a list.
    Add(ScenarioField),
    /// Row `i` of a list out.
    Remove(ScenarioField, usize),
    /// The dry run of the conditions as they are (without JavaScript).
    Try,
}

impl RowEdit {
    /// `add:after_call_filter`, `remove:after_call_filter[1]`, `try`.
    pub(super) fn parse(text: &str) -> Option<Self> {
        if text == "try" {
            return Some(Self::Try);
        }
        if let Some(list) = text.strip_prefix("add:") {
            return list_named(list).map(Self::Add);
        }
        let (list, i) = text
            .strip_prefix("remove:")?
            .strip_suffix(']')?
            .split_once('[')?;
        Some(Self::Remove(list_named(list)?, i.parse().ok()?))
    }
}

/// A row as the page shows it: its inputs' names start with `at`
/// (`after_call_filter[1]`).
pub(super) struct Row<'a, T> {
    pub(super) at: String,
    pub(super) row: &'a T,
}

fn named<'a, T>(list: &str, rows: &'a [T]) -> Vec<Row<'a, T>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| Row {
            at: format!("{list}[{i}]"),
            row,
        })
        .collect()
}

/// A list of rows by its name.
fn list_named(name: &str) -> Option<ScenarioField> {
    ScenarioField::ALL
        .into_iter()
        .find(|f| f.name() == name && (f.conditions_of().is_some() || f.headers_of().is_some()))
}

/// Both webhooks' conditions and headers, as rows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "BTreeMap<String, String>")]
pub(in crate::console) struct Rules {
    during_call_filter: Conditions,
    after_call_filter: Conditions,
    during_call_headers: Vec<HeaderRow>,
    after_call_headers: Vec<HeaderRow>,
}

/// `after_call_filter[1].value` as (`after_call_filter`, 1, `value`).
fn split_key(key: &str) -> Option<(&str, usize, &str)> {
    let (list, rest) = key.split_once('[')?;
    let (i, part) = rest.split_once("].")?;
    Some((list, i.parse().ok()?, part))
}

/// The form's inputs the named fields leave (the rows' and the JSON
/// conditions'), read as rows.
impl From<BTreeMap<String, String>> for Rules {
    fn from(posted: BTreeMap<String, String>) -> Self {
        let mut conditions: [BTreeMap<usize, ConditionRow>; 2] = Default::default();
        let mut headers: [BTreeMap<usize, HeaderRow>; 2] = Default::default();
        for (key, v) in &posted {
            let Some((list, i, part)) = split_key(key) else {
                continue;
            };
            let Some(f) = list_named(list) else {
                continue;
            };
            if let Some(kind) = f.conditions_of() {
                let row = conditions[slot(kind)].entry(i).or_default();
                match part {
                    "field" => row.field.clone_from(v),
                    "op" => row.op.clone_from(v),
                    "value" => row.value.clone_from(v),
                    _ => {}
                }
            } else if let Some(kind) = f.headers_of() {
                let row = headers[slot(kind)].entry(i).or_default();
                match part {
                    "name" => row.name.clone_from(v),
                    "value" => row.value.clone_from(v),
                    "secret" => row.secret = true,
                    "set" => row.set = true,
                    _ => {}
                }
            }
        }
        let [during_rows, after_rows] = conditions.map(|m| m.into_values().collect::<Vec<_>>());
        let [during_call_headers, after_call_headers] =
            headers.map(|m| m.into_values().collect::<Vec<_>>());
        let posted_conditions = |f: ScenarioField, rows: Vec<ConditionRow>| {
            let json = posted
                .get(&format!("{}_format", f.name()))
                .map(String::as_str);
            match (json, posted.get(f.name())) {
                (Some(JSON), Some(text)) => Conditions::Json(text.clone()),
                _ => Conditions::Rows(rows),
            }
        };
        Self {
            during_call_filter: posted_conditions(ScenarioField::DuringCallFilter, during_rows),
            after_call_filter: posted_conditions(ScenarioField::AfterCallFilter, after_rows),
            during_call_headers,
            after_call_headers,
        }
    }
}

/// `…_format` of conditions shown as JSON.
const JSON: &str = "json";

/// A kind's place in the pairs above.
fn slot(kind: EndpointKind) -> usize {
    match kind {
        EndpointKind::DuringCall => 0,
        EndpointKind::AfterCall => 1,
    }
}

impl Rules {
    /// The rows of a stored scenario's rules: a secret's value never.
    pub(super) fn stored(
        during_call_filter: &[Condition],
        after_call_filter: &[Condition],
        during_call_headers: &[Header],
        after_call_headers: &[Header],
    ) -> Self {
        let conditions = |list: &[Condition]| {
            if list.iter().all(Condition::fits_a_row) {
                Conditions::Rows(
                    list.iter()
                        .map(|c| ConditionRow {
                            field: c.field.clone(),
                            op: c.op.clone(),
                            value: c.value_text(),
                        })
                        .collect(),
                )
            } else {
                Conditions::Json(serde_json::to_string_pretty(list).unwrap_or_default())
            }
        };
        let headers = |list: &[Header]| {
            list.iter()
                .map(|h| HeaderRow {
                    name: h.name.clone(),
                    value: h.shown().value.unwrap_or_default(),
                    secret: h.secret,
                    set: h.secret,
                })
                .collect()
        };
        Self {
            during_call_filter: conditions(during_call_filter),
            after_call_filter: conditions(after_call_filter),
            during_call_headers: headers(during_call_headers),
            after_call_headers: headers(after_call_headers),
        }
    }

    pub(super) fn conditions_of(&self, kind: EndpointKind) -> &Conditions {
        match kind {
            EndpointKind::DuringCall => &self.during_call_filter,
            EndpointKind::AfterCall => &self.after_call_filter,
        }
    }

    pub(super) fn headers_of(&self, kind: EndpointKind) -> &[HeaderRow] {
        match kind {
            EndpointKind::DuringCall => &self.during_call_headers,
            EndpointKind::AfterCall => &self.after_call_headers,
        }
    }

    /// Applies a row button's edit.
    pub(super) fn edit(&mut self, edit: RowEdit) {
        let (list, at) = match edit {
            RowEdit::Try => return,
            RowEdit::Add(list) => (list, None),
            RowEdit::Remove(list, i) => (list, Some(i)),
        };
        fn apply<T: Default>(rows: &mut Vec<T>, at: Option<usize>) {
            match at {
                None => rows.push(T::default()),
                Some(i) if i < rows.len() => drop(rows.remove(i)),
                Some(_) => {}
            }
        }
        match (list.conditions_of(), list.headers_of()) {
            (Some(kind), _) => {
                let c = match kind {
                    EndpointKind::DuringCall => &mut self.during_call_filter,
                    EndpointKind::AfterCall => &mut self.after_call_filter,
                };
                if let Conditions::Rows(rows) = c {
                    apply(rows, at);
                }
            }
            (None, Some(kind)) => apply(
                match kind {
                    EndpointKind::DuringCall => &mut self.during_call_headers,
                    EndpointKind::AfterCall => &mut self.after_call_headers,
                },
                at,
            ),
            (None, None) => {}
        }
    }

    /// The conditions of the webhook of `kind` the rows say (blank rows
    /// left out), or why the JSON the form was given cannot be read.
    pub(super) fn conditions(&self, kind: EndpointKind) -> Result<Vec<Condition>, FieldError> {
        match self.conditions_of(kind) {
            Conditions::Rows(rows) => Ok(rows
                .iter()
                .filter(|r| !r.is_blank())
                .map(|r| Condition::from_text(&r.field, &r.op, &r.value))
                .collect()),
            Conditions::Json(text) => {
                let field = ScenarioField::conditions(kind).name();
                serde_json::from_str(text).map_err(|e| {
                    FieldError::new(
                        field,
                        "invalid_json",
                        format!("{field} must be the JSON the form was given ({e})"),
                    )
                })
            }
        }
    }

    /// The headers of the webhook of `kind` the rows say (blank rows left
    /// out): a secret's empty value is `null`, which keeps a stored one.
    pub(super) fn headers(&self, kind: EndpointKind) -> Vec<Header> {
        self.headers_of(kind)
            .iter()
            .filter(|r| !r.is_blank())
            .map(|r| Header {
                name: r.name.trim().to_owned(),
                value: (!(r.secret && r.value.is_empty())).then(|| r.value.clone()),
                secret: r.secret,
            })
            .collect()
    }

    /// The stored conditions' JSON, when rows cannot show them.
    pub(super) fn conditions_json(&self, kind: &EndpointKind) -> Option<&str> {
        match self.conditions_of(*kind) {
            Conditions::Json(text) => Some(text),
            Conditions::Rows(_) => None,
        }
    }

    /// The condition rows of the webhook of `kind`, named.
    pub(super) fn condition_rows(&self, kind: &EndpointKind) -> Vec<Row<'_, ConditionRow>> {
        let list = ScenarioField::conditions(*kind).name();
        match self.conditions_of(*kind) {
            Conditions::Rows(rows) => named(list, rows),
            Conditions::Json(_) => Vec::new(),
        }
    }

    /// The header rows of the webhook of `kind`, named.
    pub(super) fn header_rows(&self, kind: &EndpointKind) -> Vec<Row<'_, HeaderRow>> {
        named(
            callhook_core::headers::list_name(*kind),
            self.headers_of(*kind),
        )
    }

    /// The names of a list's rows (`after_call_filter[0]`, …).
    pub(super) fn row_names(&self, list: ScenarioField) -> Vec<String> {
        match (list.conditions_of(), list.headers_of()) {
            (Some(kind), _) => self
                .condition_rows(&kind)
                .into_iter()
                .map(|r| r.at)
                .collect(),
            (None, Some(kind)) => self.header_rows(&kind).into_iter().map(|r| r.at).collect(),
            (None, None) => Vec::new(),
        }
    }

    /// An error's field as the form shows it: an item's number counts the
    /// rows, blank ones too (`after_call_filter[1].value` is the second
    /// row that is not blank).
    pub(super) fn shown_field(&self, field: &str) -> String {
        let Some((list, i, part)) = split_key(field) else {
            return field.to_owned();
        };
        let blank: Vec<bool> = match list_named(list) {
            Some(f) => match (f.conditions_of(), f.headers_of()) {
                (Some(kind), _) => match self.conditions_of(kind) {
                    Conditions::Rows(rows) => rows.iter().map(ConditionRow::is_blank).collect(),
                    Conditions::Json(_) => return field.to_owned(),
                },
                (None, Some(kind)) => self
                    .headers_of(kind)
                    .iter()
                    .map(HeaderRow::is_blank)
                    .collect(),
                (None, None) => return field.to_owned(),
            },
            None => return field.to_owned(),
        };
        let row = blank
            .iter()
            .enumerate()
            .filter(|(_, b)| !**b)
            .nth(i)
            .map_or(i, |(row, _)| row);
        format!("{list}[{row}].{part}")
    }
}

#[cfg(test)]
mod tests;
