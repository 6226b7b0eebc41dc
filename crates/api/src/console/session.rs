//! Console sessions: a signed cookie, no server-side state, so any API
//! process behind a load balancer accepts it (they share the admin tokens,
//! from which the signing key is derived).
//!
//! The cookie holds `name.sid.expiry.mac` (the admin token's name, a random
//! session id kept for the session's life, a unix expiry, HMAC-SHA256 of
//! them); every request renews the expiry (idle expiry). CSRF: each form
//! carries HMAC("csrf", name, sid), checked on every post, so a renewal
//! between showing a form and posting it changes nothing.

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::auth::NamedToken;

pub(crate) const COOKIE: &str = "callhook_session";
/// A session ends after this long without a request.
pub(crate) const IDLE_SECS: i64 = 30 * 60;

/// The key sessions are signed with: derived from every admin token, so a
/// token's removal ends the sessions it opened... and all others (a rotation
/// logs everyone out, which is what rotating is for).
#[derive(Clone)]
pub(crate) struct SessionKey([u8; 32]);

impl SessionKey {
    pub(crate) fn derive(tokens: &[NamedToken]) -> Self {
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

    /// A session cookie value for `session`, valid until `now + IDLE_SECS`.
    pub(crate) fn issue(&self, session: &Session, now: i64) -> String {
        let exp = (now + IDLE_SECS).to_string();
        let mac = self.mac(&[
            session.name.as_bytes(),
            session.sid.as_bytes(),
            exp.as_bytes(),
        ]);
        format!("{}.{}.{exp}.{mac}", hex(&session.name), session.sid)
    }

    /// The session of a valid, unexpired cookie.
    pub(crate) fn verify(&self, value: &str, now: i64) -> Option<Session> {
        let mut parts = value.split('.');
        let (name, sid, exp, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let name = unhex(name)?;
        let expected = self.mac(&[name.as_bytes(), sid.as_bytes(), exp.as_bytes()]);
        let same: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), mac.as_bytes()).into();
        (same && exp.parse::<i64>().ok()? > now).then(|| Session {
            name,
            sid: sid.to_owned(),
        })
    }

    /// The CSRF token of a session (its forms carry it).
    pub(crate) fn csrf(&self, session: &Session) -> String {
        self.mac(&[b"csrf", session.name.as_bytes(), session.sid.as_bytes()])
    }

    /// Whether `token` is the CSRF token of `session`.
    pub(crate) fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.csrf(session).as_bytes(), token.as_bytes()).into()
    }
}

/// A signed-in operator: the admin token's name and the session's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub name: String,
    pub sid: String,
}

impl Session {
    /// A new session for the token named `name`.
    pub(crate) fn new(name: &str) -> Self {
        use rand::RngCore;
        let mut id = [0u8; 12];
        rand::rng().fill_bytes(&mut id);
        Self {
            name: name.to_owned(),
            sid: id.iter().map(|b| format!("{b:02x}")).collect(),
        }
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
        let alice = Session::new("alice");
        let v = k.issue(&alice, 1000);
        assert_eq!(k.verify(&v, 1000), Some(alice.clone()));
        assert_eq!(k.verify(&v, 1000 + IDLE_SECS), None, "expired");
        let forged = v.replace(&hex("alice"), &hex("mallory"));
        assert_eq!(k.verify(&forged, 1000), None);
        let renewed = k.issue(&alice, 1500);
        assert_eq!(
            k.verify(&renewed, 1500),
            Some(alice.clone()),
            "the same session, renewed"
        );
        let other = SessionKey::derive(&[NamedToken {
            name: "admin".into(),
            token: "other".to_owned().into(),
        }]);
        assert_eq!(other.verify(&v, 1000), None, "another key");
        assert!(k.csrf_ok(&alice, &k.csrf(&alice)));
        assert!(!k.csrf_ok(&alice, "0"));
        assert!(
            !k.csrf_ok(&Session::new("alice"), &k.csrf(&alice)),
            "bound to its session"
        );
    }
}
