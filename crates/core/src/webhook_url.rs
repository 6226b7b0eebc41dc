use std::fmt;

use crate::FieldError;

/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// A receiver's address: absolute `http`/`https` with a host, no spaces, no
/// embedded credentials, at most 2048 characters, kept in its parsed,
/// normalised form (WHATWG URL: lower-case scheme and host, default port
/// dropped, `/` for an empty path), so callhook, the console's "copy as
/// curl" and every other client read the same host. A `\` before the path is
/// refused: parsers disagree on it (`http://a\@b/` is host `a` to one and
/// `b` to curl). Only its form is checked; where it resolves to is checked
/// at send time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// `""` (or only spaces) means "no webhook" and gives `None`.
    pub fn parse_optional(s: &str, field: &str) -> Result<Option<Self>, FieldError> {
        if s.trim().is_empty() {
            return Ok(None);
        }
        Self::parse(s, field).map(Some)
    }

    pub fn parse(s: &str, field: &str) -> Result<Self, FieldError> {
        let err = |m: &str| FieldError::new(field, "invalid_url", m.to_owned());
        if s.len() > MAX_URL_LEN {
            return Err(err("URL must be at most 2048 characters"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("URL must not contain spaces or control characters"));
        }
        if authority(s).contains('\\') {
            return Err(err(
                "URL must not contain a backslash before its path (clients read its host differently)",
            ));
        }
        let url = url::Url::parse(s)
            .map_err(|e| err(&format!("URL must be absolute http:// or https:// ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(err("URL must use http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(err("URL must name a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err("URL must not embed credentials (user:password@); put a token in the path or query instead"));
        }
        let normalised = url.as_str();
        if normalised.len() > MAX_URL_LEN {
            return Err(err("URL must be at most 2048 characters"));
        }
        Ok(Self(normalised.to_owned()))
    }

    /// Wraps a URL read back from the database, where only parsed ones are written.
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The text between `scheme://` and the first `/`, `?` or `#`, as written.
fn authority(s: &str) -> &str {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_and_empty_as_none() {
        assert!(WebhookUrl::parse("https://crm.example.com/hook?x=1", "u").is_ok());
        assert!(WebhookUrl::parse("http://127.0.0.1:8080/", "u").is_ok());
        assert_eq!(WebhookUrl::parse_optional("", "u").unwrap(), None);
    }

    #[test]
    fn keeps_the_parsed_normalised_form() {
        for (given, kept) in [
            (
                "HTTPS://CRM.Example.COM/Hook?x=1",
                "https://crm.example.com/Hook?x=1",
            ),
            ("http://127.0.0.1:80", "http://127.0.0.1/"),
            ("https://example.com:443/a/../b", "https://example.com/b"),
            ("http://[::1]:8080/x", "http://[::1]:8080/x"),
            (
                "https://crm.example.com/a/b\\c",
                "https://crm.example.com/a/b/c",
            ),
        ] {
            assert_eq!(
                WebhookUrl::parse(given, "u").unwrap().as_str(),
                kept,
                "{given}"
            );
        }
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "/relative",
            "ftp://example.com/",
            "https://exa mple.com/",
            "https://user:pw@example.com/",
            "mailto:a@b.c",
            "http://localhost\\@127.0.0.1:19311/",
            "http://a\\b/",
        ] {
            let e = WebhookUrl::parse(bad, "after_call_url").unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.code),
                ("after_call_url", "invalid_url"),
                "{bad}"
            );
        }
        let e = WebhookUrl::parse("http://localhost\\@127.0.0.1/", "u").unwrap_err();
        assert!(e.message.contains("backslash"), "{}", e.message);
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(WebhookUrl::parse(&long, "u").is_err());
    }
}
