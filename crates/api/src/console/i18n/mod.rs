//! The console's two languages, chosen by `?lang=`, then the
//! `callhook_lang` cookie, then `Accept-Language`: one catalogue of labels
//! per language ([`Labels`]: a label missing in one does not compile), and
//! errors in the page's language ([`errors`]).

use axum::http::HeaderMap;

mod en;
pub(crate) mod errors;
mod labels;
mod ru;
mod ru_errors;
#[cfg(test)]
mod tests;
mod timeline;

pub(crate) use errors::ShownError;
pub(crate) use labels::Labels;
pub(crate) use timeline::TimelineLabels;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Ru,
    En,
}

impl Lang {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Ru => "ru",
            Self::En => "en",
        }
    }

    /// The language a request asks for.
    pub(crate) fn of(query: Option<&str>, headers: &HeaderMap) -> Self {
        let parse = |s: &str| match s.trim().get(..2) {
            Some("ru") => Some(Self::Ru),
            Some("en") => Some(Self::En),
            _ => None,
        };
        if let Some(l) = query.and_then(parse) {
            return l;
        }
        let cookie = super::cookies::get(headers, super::cookies::LANG);
        if let Some(l) = cookie.as_deref().and_then(parse) {
            return l;
        }
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').find_map(parse))
            .unwrap_or(Self::En)
    }

    /// Every label in this language.
    pub(crate) fn labels(self) -> &'static Labels {
        match self {
            Self::Ru => &ru::RU,
            Self::En => &en::EN,
        }
    }

    /// The call page's timeline in this language.
    pub(crate) fn timeline(self) -> &'static TimelineLabels {
        match self {
            Self::Ru => &timeline::RU,
            Self::En => &timeline::EN,
        }
    }

    /// The other language (for the switch link).
    pub(crate) fn other(self) -> Self {
        match self {
            Self::Ru => Self::En,
            Self::En => Self::Ru,
        }
    }
}
