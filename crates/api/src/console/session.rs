//! Console sessions: a signed cookie, no server-side state, so any API
//! process behind a load balancer accepts it (they share the admin tokens,
//! from which the signing key is derived).
//!
//! The cookie holds `name.expiry.mac` (the admin token's name, a unix
//! expiry, HMAC-SHA256 of both); every request renews it (idle expiry).
//! CSRF: each form carries HMAC("csrf", cookie), checked on every post.

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::auth::NamedToken;

pub const COOKIE: &str = "callhook_session";
/// A session ends after this long without a request.
pub const IDLE_SECS: i64 = 30 * 60;

/// The key sessions are signed with: derived from every admin token, so a
/// token's removal ends the sessions it opened... and all others (a rotation
/// logs everyone out, which is what rotating is for).
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn derive(tokens: &[NamedToken]) -> Self {
        let mut h = Sha256::new();
        h.update(b"callhook console session v1");
        for t in tokens {
            h.update(t.name.as_bytes());
            h.update([0]);
            h.update(t.token.expose_secret().as_bytes());
            h.update([0]);
        }
        Self(h.finalize().into())
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        for p in parts {
            m.update(p);
            m.update(b"\x1f");
        }
        m.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A session cookie value for `name`, valid until `now + IDLE_SECS`.
    pub fn issue(&self, name: &str, now: i64) -> String {
        let exp = (now + IDLE_SECS).to_string();
        let mac = self.mac(&[name.as_bytes(), exp.as_bytes()]);
        format!("{}.{exp}.{mac}", hex(name))
    }

    /// The token name of a valid, unexpired session cookie.
    pub fn verify(&self, value: &str, now: i64) -> Option<String> {
        let mut parts = value.split('.');
        let (name, exp, mac) = (parts.next()?, parts.next()?, parts.next()?);
        let name = unhex(name)?;
        let expected = self.mac(&[name.as_bytes(), exp.as_bytes()]);
        let same: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), mac.as_bytes()).into();
        (same && exp.parse::<i64>().ok()? > now).then_some(name)
    }

    /// The CSRF token of a session (its forms carry it).
    pub fn csrf(&self, session: &str) -> String {
        self.mac(&[b"csrf", session.as_bytes()])
    }

    /// Whether `token` is the CSRF token of `session`.
    pub fn csrf_ok(&self, session: &str, token: &str) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.csrf(session).as_bytes(), token.as_bytes()).into()
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::derive(&[NamedToken {
            name: "admin".into(),
            token: "t".to_owned().into(),
        }])
    }

    #[test]
    fn a_session_verifies_until_it_expires_and_not_when_tampered() {
        let k = key();
        let v = k.issue("alice", 1000);
        assert_eq!(k.verify(&v, 1000).as_deref(), Some("alice"));
        assert_eq!(k.verify(&v, 1000 + IDLE_SECS), None, "expired");
        let forged = v.replace(&hex("alice"), &hex("mallory"));
        assert_eq!(k.verify(&forged, 1000), None);
        let other = SessionKey::derive(&[NamedToken {
            name: "admin".into(),
            token: "other".to_owned().into(),
        }]);
        assert_eq!(other.verify(&v, 1000), None, "another key");
        assert!(k.csrf_ok(&v, &k.csrf(&v)));
        assert!(!k.csrf_ok(&v, "0"));
    }
}
