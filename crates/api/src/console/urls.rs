//! The console's pages' addresses, built here (a page's language carried
//! along, the data in them encoded once), so no handler writes a path.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use super::i18n::Lang;

/// What a path segment must encode: everything but unreserved characters
/// and a few harmless ones (RFC 3986's `pchar`, minus `/` and `%`).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']')
    .add(b'+');

/// A console page a handler sends the browser to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Page<'a> {
    /// The scenarios (`/console`).
    Scenarios,
    /// One scenario's form; `saved` after a save.
    Scenario {
        id: uuid::Uuid,
        saved: bool,
    },
    Health,
    Deliveries,
    Login,
    /// A call's page (its id encoded as one path segment).
    Call(&'a str),
}

impl Page<'_> {
    /// Its address in `lang`.
    pub(super) fn href(self, lang: Lang) -> String {
        let lang = lang.code();
        match self {
            Self::Scenarios => format!("/console?lang={lang}"),
            Self::Scenario { id, saved: false } => format!("/console/scenarios/{id}?lang={lang}"),
            Self::Scenario { id, saved: true } => {
                format!("/console/scenarios/{id}?lang={lang}&saved=1")
            }
            Self::Health => format!("/console/health?lang={lang}"),
            Self::Deliveries => format!("/console/deliveries?lang={lang}"),
            Self::Login => format!("/console/login?lang={lang}"),
            Self::Call(id) => format!(
                "/console/calls/{}?lang={lang}",
                utf8_percent_encode(id, SEGMENT)
            ),
        }
    }
}

/// A call's page.
pub(super) fn call(call_id: &str, lang: Lang) -> String {
    Page::Call(call_id).href(lang)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_id_is_one_path_segment_whatever_it_holds() {
        assert_eq!(call("313", Lang::En), "/console/calls/313?lang=en");
        assert_eq!(
            call("a b#c?d%e+f/g", Lang::Ru),
            "/console/calls/a%20b%23c%3Fd%25e%2Bf%2Fg?lang=ru"
        );
        assert_eq!(
            call("звонок", Lang::En),
            "/console/calls/%D0%B7%D0%B2%D0%BE%D0%BD%D0%BE%D0%BA?lang=en"
        );
    }
}
