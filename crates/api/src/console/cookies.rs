//! The console's cookies, read and written with the `cookie` crate: the
//! session (see [`super::session`]), the sign-in form's CSRF token and the
//! language.
//!
//! Not `axum_extra`'s `CookieJar`, on purpose: of two cookies with one name
//! it keeps the last, where a browser sends the one of the longest path
//! first (RFC 6265, 5.4), so a cookie set for a wider path (by a sibling
//! host, say) would shadow the console's own; and it writes `Set-Cookie`
//! headers in no fixed order.

use axum::http::{header, HeaderMap, HeaderValue};
use cookie::time::Duration;
use cookie::{Cookie, SameSite};

use super::i18n::Lang;
use super::session;

/// The sign-in form's double-submit CSRF cookie.
pub(super) const LOGIN_CSRF: &str = "callhook_login_csrf";
/// The language last asked for with `?lang=`.
pub(super) const LANG: &str = "callhook_lang";

/// The value of the first cookie named `name` the request carries.
pub(super) fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .flatten()
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// The session cookie: the console's paths only, out of scripts' reach,
/// never sent cross-site, for the idle expiry; `Secure` over https.
pub(super) fn session(value: String, headers: &HeaderMap) -> Cookie<'static> {
    Cookie::build((session::COOKIE, value))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(Duration::seconds(session::IDLE_SECS))
        .secure(https(headers))
        .build()
}

/// The session cookie cleared (sign-out).
pub(super) fn session_cleared() -> Cookie<'static> {
    Cookie::build((session::COOKIE, ""))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(Duration::ZERO)
        .build()
}

/// The sign-in form's CSRF token, for the sign-in path only, for the
/// browser's session; `Secure` over https.
pub(super) fn login_csrf(value: String, headers: &HeaderMap) -> Cookie<'static> {
    Cookie::build((LOGIN_CSRF, value))
        .path("/console/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(https(headers))
        .build()
}

/// The language, for the browser's session.
pub(super) fn lang(lang: Lang) -> Cookie<'static> {
    Cookie::build((LANG, lang.code()))
        .path("/console")
        .same_site(SameSite::Strict)
        .build()
}

/// Adds a `Set-Cookie` header for each of `cookies`, in their order.
pub(super) fn set<'a>(h: &mut HeaderMap, cookies: impl IntoIterator<Item = &'a Cookie<'a>>) {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
            h.append(header::SET_COOKIE, v);
        }
    }
}

/// Whether the console is reached over https (through a trusted proxy:
/// from anyone else the header was dropped on the way in).
fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// Every attribute a browser reads, the `Secure` flag as set or not.
    fn attributes(c: &Cookie<'_>) -> impl PartialEq + std::fmt::Debug {
        (
            c.name().to_owned(),
            c.value().to_owned(),
            c.path().map(str::to_owned),
            c.domain().map(str::to_owned),
            c.http_only() == Some(true),
            c.secure() == Some(true),
            c.same_site(),
            c.max_age(),
            c.expires().is_some(),
        )
    }

    /// `cookie` as a browser reads its `Set-Cookie` header.
    fn sent(cookie: &Cookie<'_>) -> Cookie<'static> {
        let mut h = HeaderMap::new();
        set(&mut h, [cookie]);
        let v = h[header::SET_COOKIE].to_str().unwrap().to_owned();
        Cookie::parse(v).unwrap()
    }

    #[test]
    fn each_cookie_has_the_attributes_the_console_always_set() {
        // The headers as they were written by hand before.
        let plain = headers(&[]);
        let https = headers(&[("x-forwarded-proto", "HTTPS")]);
        let cases = [
            (
                session("v.1".into(), &plain),
                "callhook_session=v.1; Path=/console; HttpOnly; SameSite=Strict; Max-Age=1800",
            ),
            (
                session("v.1".into(), &https),
                "callhook_session=v.1; Path=/console; HttpOnly; SameSite=Strict; Max-Age=1800; Secure",
            ),
            (
                session_cleared(),
                "callhook_session=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
            (
                login_csrf("ab12".into(), &plain),
                "callhook_login_csrf=ab12; Path=/console/login; HttpOnly; SameSite=Strict",
            ),
            (
                login_csrf("ab12".into(), &https),
                "callhook_login_csrf=ab12; Path=/console/login; HttpOnly; SameSite=Strict; Secure",
            ),
            (
                lang(Lang::Ru),
                "callhook_lang=ru; Path=/console; SameSite=Strict",
            ),
        ];
        for (new, old) in cases {
            let old = Cookie::parse(old).unwrap();
            assert_eq!(attributes(&sent(&new)), attributes(&old), "{new}");
        }
    }

    #[test]
    fn the_first_cookie_of_a_name_is_read_across_cookie_headers() {
        let h = headers(&[
            ("cookie", "other=1; callhook_session=first"),
            ("cookie", "callhook_session=second"),
        ]);
        assert_eq!(get(&h, "callhook_session").as_deref(), Some("first"));
        assert_eq!(get(&h, "other").as_deref(), Some("1"));
        assert_eq!(get(&h, "callhook"), None, "a prefix of a name is not it");
        let spaced = headers(&[("cookie", "a=1;callhook_lang=en ; b")]);
        assert_eq!(get(&spaced, LANG).as_deref(), Some("en"));
    }
}
