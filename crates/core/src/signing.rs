//! Standard Webhooks signing (<https://www.standardwebhooks.com>):
//! `webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::FieldError;

const PREFIX: &str = "whsec_";

/// A scenario's signing key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// A signing secret as the database keeps it: `whsec_…`, or sealed under
/// the operator's key (`crate::sealing`). `Debug` never shows it; a
/// [`crate::Sealer`] turns it into the key to sign with.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
pub struct StoredSecret(String);

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredSecret(***)")
    }
}

impl StoredSecret {
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The text (for the admin API's answer, and for storing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl SigningSecret {
    /// 32 random bytes from the OS's generator.
    pub fn generate() -> Self {
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    /// Reads `whsec_<base64>` (the form the API shows and the database keeps).
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let err = || {
            FieldError::new(
                "signing_secret",
                "invalid_secret",
                "signing secret must be whsec_ followed by base64 of at least 24 bytes",
            )
        };
        let b64 = s.strip_prefix(PREFIX).ok_or_else(err)?;
        let key = STANDARD.decode(b64).map_err(|_| err())?;
        if key.len() < 24 {
            return Err(err());
        }
        Ok(Self(key))
    }

    /// `whsec_<base64>`.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_spec_example() {
        // The example from the Standard Webhooks specification.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let fresh = SigningSecret::generate();
        assert_eq!(SigningSecret::parse(&fresh.expose()).unwrap(), fresh);
        assert!(format!("{fresh:?}").contains("***"));
        assert!(SigningSecret::parse("whsec_abc").is_err());
    }
}
