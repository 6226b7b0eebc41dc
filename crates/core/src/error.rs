use std::fmt;

/// A value that failed validation, with the JSON name of the input it came
/// from, so the API can answer `422` naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON name (or dotted path, e.g. `custom_fields[2].value`) of the input.
    pub field: String,
    /// Stable machine-readable code, e.g. `invalid_phone`.
    pub code: &'static str,
    /// What is wrong and what would be right, for a human.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }

    /// The same error reported under another (usually more precise) field name.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}
