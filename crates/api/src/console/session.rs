//! Console sessions: a signed cookie, no server-side state, so any API
//! process behind a load balancer accepts it (they share the admin tokens,
//! from which the signing key is derived).
//!
//! The cookie holds `name.sid.started.expiry.mac` (the admin token's name, a
//! random session id kept for the session's life, when it signed in, a unix
//! expiry, HMAC-SHA256 of them); every request renews the expiry (idle
//! expiry), never past `started` + the absolute lifetime
//! (`CALLHOOK_CONSOLE_SESSION_MAX`). Signing out is remembered in Postgres
//! (`callhook_store::sessions`), which every request checks, so the cookie
//! is dead everywhere after it. Changing the admin tokens changes the key:
//! every session ends. CSRF: each form carries HMAC("csrf", name, sid),
//! checked on every post, so a renewal between showing a form and posting it
//! changes nothing.

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
        hex::encode(m.finalize().into_bytes())
    }

    /// A session cookie value for `session`, valid until `now + IDLE_SECS`.
    pub(crate) fn issue(&self, session: &Session, now: i64) -> String {
        let exp = (now + IDLE_SECS).to_string();
        let started = session.started.to_string();
        let mac = self.mac(&[
            session.name.as_bytes(),
            session.sid.as_bytes(),
            started.as_bytes(),
            exp.as_bytes(),
        ]);
        format!(
            "{}.{}.{started}.{exp}.{mac}",
            hex(&session.name),
            session.sid
        )
    }

    /// The session of a valid cookie, neither idle past its expiry nor
    /// older than `max_secs` (whether it signed out is Postgres's to say).
    pub(crate) fn verify(&self, value: &str, now: i64, max_secs: i64) -> Option<Session> {
        let mut parts = value.split('.');
        let (name, sid, started, exp, mac) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let name = unhex(name)?;
        let expected = self.mac(&[
            name.as_bytes(),
            sid.as_bytes(),
            started.as_bytes(),
            exp.as_bytes(),
        ]);
        let same: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), mac.as_bytes()).into();
        let started: i64 = started.parse().ok()?;
        let fresh = exp.parse::<i64>().ok()? > now && now < started.saturating_add(max_secs);
        (same && fresh).then(|| Session {
            name,
            sid: sid.to_owned(),
            started,
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
    pub(crate) name: String,
    pub(crate) sid: String,
    /// When it signed in (unix seconds): its absolute lifetime counts from here.
    pub(crate) started: i64,
}

impl Session {
    /// A new session for the token named `name`, signed in at `now`.
    pub(crate) fn new(name: &str, now: i64) -> Self {
        use rand::RngCore;
        let mut id = [0u8; 12];
        rand::rng().fill_bytes(&mut id);
        Self {
            name: name.to_owned(),
            sid: hex::encode(id),
            started: now,
        }
    }
}

fn hex(s: &str) -> String {
    hex::encode(s)
}

fn unhex(s: &str) -> Option<String> {
    String::from_utf8(hex::decode(s).ok()?).ok()
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

    const MAX: i64 = 12 * 3600;

    #[test]
    fn a_session_verifies_until_it_expires_and_not_when_tampered() {
        let k = key();
        let alice = Session::new("alice", 1000);
        let v = k.issue(&alice, 1000);
        assert_eq!(k.verify(&v, 1000, MAX), Some(alice.clone()));
        assert_eq!(k.verify(&v, 1000 + IDLE_SECS, MAX), None, "expired");
        let forged = v.replace(&hex("alice"), &hex("mallory"));
        assert_eq!(k.verify(&forged, 1000, MAX), None);
        let renewed = k.issue(&alice, 1500);
        assert_eq!(
            k.verify(&renewed, 1500, MAX),
            Some(alice.clone()),
            "the same session, renewed"
        );
        let other = SessionKey::derive(&[NamedToken {
            name: "admin".into(),
            token: "other".to_owned().into(),
        }]);
        assert_eq!(other.verify(&v, 1000, MAX), None, "another key");
        assert!(k.csrf_ok(&alice, &k.csrf(&alice)));
        assert!(!k.csrf_ok(&alice, "0"));
        assert!(
            !k.csrf_ok(&Session::new("alice", 1000), &k.csrf(&alice)),
            "bound to its session"
        );
    }

    #[test]
    fn renewing_never_carries_a_session_past_its_absolute_lifetime() {
        let k = key();
        let alice = Session::new("alice", 1000);
        // Renewed every 20 minutes, well inside the idle expiry.
        let mut now = 1000;
        while now + 1200 < 1000 + MAX {
            now += 1200;
            let renewed = k.issue(&alice, now);
            assert!(k.verify(&renewed, now, MAX).is_some(), "alive at {now}");
        }
        let last = k.issue(&alice, now);
        assert_eq!(
            k.verify(&last, 1000 + MAX, MAX),
            None,
            "over at its lifetime"
        );
        // The start is signed: moving it forward breaks the MAC.
        let moved = last.replace(".1000.", ".90000.");
        assert_eq!(k.verify(&moved, 1000 + MAX, MAX), None);
    }
}
