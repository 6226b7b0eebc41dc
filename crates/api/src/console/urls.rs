//! The console's links that carry data: built here, encoded once.

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

/// A call's page.
pub(super) fn call(call_id: &str, lang: Lang) -> String {
    format!(
        "/console/calls/{}?lang={}",
        utf8_percent_encode(call_id, SEGMENT),
        lang.code()
    )
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
