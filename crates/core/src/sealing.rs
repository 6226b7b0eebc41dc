//! Signing secrets at rest: sealed with XChaCha20-Poly1305 under the
//! operator's key (`CALLHOOK_SECRET_KEY`), opened only in memory.
//!
//! A sealed secret is stored as `enc:v2:<key id>:<base64 of nonce and
//! ciphertext>`, the key id being the first 8 hex digits of the key's
//! SHA-256, so a previous key (`CALLHOOK_SECRET_KEY_PREVIOUS`) still opens
//! what it sealed until `callhook rotate-secret-key` re-seals every row.
//! Without a key, secrets are stored as they are (`whsec_…`); a plain stored
//! secret is always readable, so turning a key on needs no migration.
//!
//! The seal is bound to its place: the associated data names the scenario
//! and the field (`callhook:scenario:<id>:signing_secret`), so a sealed
//! secret copied into another scenario's row does not open there. The
//! current and the previous secret are one field in this sense: a rotation
//! moves the one into the other in SQL. Secrets sealed before the binding
//! (`enc:v1:`) still open, unbound, until `callhook rotate-secret-key`
//! re-seals them as `enc:v2:`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::Digest;
use uuid::Uuid;

use crate::signing::{SigningSecret, StoredSecret};

const PREFIX: &str = "enc:v2:";
/// Sealed before the associated data bound a seal to its scenario.
const UNBOUND_PREFIX: &str = "enc:v1:";

/// The associated data of a scenario's sealed `field`.
fn bound_to(scenario: Uuid, field: &str) -> String {
    format!("callhook:scenario:{scenario}:{field}")
}

/// The field a scenario's signing secrets (current and previous) are
/// bound to.
const SIGNING_SECRET: &str = "signing_secret";

/// A 32-byte key and its id. `Debug` never shows the key.
#[derive(Clone)]
pub struct SealingKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealingKey({})", self.id)
    }
}

impl SealingKey {
    /// Reads 32 bytes given as base64 (`openssl rand -base64 32`).
    pub fn parse(b64: &str) -> Result<Self, String> {
        let key = STANDARD.decode(b64.trim()).map_err(|_| {
            "must be base64 of 32 random bytes (openssl rand -base64 32)".to_owned()
        })?;
        if key.len() != 32 {
            return Err(format!("must be 32 bytes, base64; got {}", key.len()));
        }
        let digest = sha2::Sha256::digest(&key);
        let id = hex::encode(&digest[..4]);
        Ok(Self {
            id,
            cipher: XChaCha20Poly1305::new_from_slice(&key).expect("32-byte key"),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Why a stored secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed with key {0}, which is neither CALLHOOK_SECRET_KEY nor CALLHOOK_SECRET_KEY_PREVIOUS")]
    UnknownKey(String),
    #[error("damaged: it does not open with its key, or is not a signing secret")]
    Damaged,
}

/// Seals new secrets with the current key, opens with either.
#[derive(Clone, Debug, Default)]
pub struct Sealer {
    current: Option<SealingKey>,
    previous: Option<SealingKey>,
}

impl Sealer {
    /// No key: secrets are stored as they are.
    pub fn plain() -> Self {
        Self::default()
    }

    pub fn new(current: Option<SealingKey>, previous: Option<SealingKey>) -> Self {
        Self { current, previous }
    }

    /// Whether new secrets are sealed.
    pub fn seals(&self) -> bool {
        self.current.is_some()
    }

    /// The form scenario `owner`'s secret is stored in.
    pub fn seal(&self, secret: &SigningSecret, owner: Uuid) -> StoredSecret {
        StoredSecret::new(self.seal_text(&secret.expose(), owner, SIGNING_SECRET))
    }

    /// The `whsec_…` text of scenario `owner`'s stored secret.
    pub fn reveal(&self, stored: &StoredSecret, owner: Uuid) -> Result<String, OpenError> {
        self.open_text(stored.expose(), owner, SIGNING_SECRET)
    }

    /// The stored form of any secret text of scenario `owner`'s `field` (a
    /// secret header's value, say): sealed under the current key, bound to
    /// both; as it is without a key.
    pub fn seal_text(&self, text: &str, owner: Uuid, field: &str) -> String {
        let Some(key) = &self.current else {
            return text.to_owned();
        };
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let aad = bound_to(owner, field);
        let payload = Payload {
            msg: text.as_bytes(),
            aad: aad.as_bytes(),
        };
        let sealed = key
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .expect("sealing in memory cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, STANDARD.encode(blob))
    }

    /// The text a stored form of [`Self::seal_text`] holds.
    pub fn open_text(&self, stored: &str, owner: Uuid, field: &str) -> Result<String, OpenError> {
        let (rest, aad) = if let Some(rest) = stored.strip_prefix(PREFIX) {
            (rest, bound_to(owner, field))
        } else if let Some(rest) = stored.strip_prefix(UNBOUND_PREFIX) {
            (rest, String::new())
        } else {
            return Ok(stored.to_owned());
        };
        let (id, b64) = rest.split_once(':').ok_or(OpenError::Damaged)?;
        let key = [&self.current, &self.previous]
            .into_iter()
            .flatten()
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let blob = STANDARD.decode(b64).map_err(|_| OpenError::Damaged)?;
        if blob.len() < 24 {
            return Err(OpenError::Damaged);
        }
        let (nonce, sealed) = blob.split_at(24);
        let payload = Payload {
            msg: sealed,
            aad: aad.as_bytes(),
        };
        let plain = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| OpenError::Damaged)?;
        String::from_utf8(plain).map_err(|_| OpenError::Damaged)
    }

    /// A stored text's form under the current key, bound to `owner` and
    /// `field`: `None` when it already is.
    pub fn reseal_text(
        &self,
        stored: &str,
        owner: Uuid,
        field: &str,
    ) -> Result<Option<String>, OpenError> {
        let current = self.current.as_ref().map(|k| k.id.as_str());
        let sealed_with = stored
            .strip_prefix(PREFIX)
            .and_then(|r| r.split_once(':'))
            .map(|(id, _)| id);
        if sealed_with.is_some() && sealed_with == current {
            return Ok(None);
        }
        if current.is_none() && !stored.starts_with("enc:") {
            return Ok(None);
        }
        let text = self.open_text(stored, owner, field)?;
        Ok(Some(self.seal_text(&text, owner, field)))
    }

    /// The key to sign with.
    pub fn key(&self, stored: &StoredSecret, owner: Uuid) -> Result<SigningSecret, OpenError> {
        SigningSecret::parse(&self.reveal(stored, owner)?).map_err(|_| OpenError::Damaged)
    }

    /// The stored form under the current key, bound to `owner`: `None` when
    /// it already is.
    pub fn reseal(
        &self,
        stored: &StoredSecret,
        owner: Uuid,
    ) -> Result<Option<StoredSecret>, OpenError> {
        // A secret that does not open as a signing key is damaged, sealed or not.
        self.key(stored, owner)?;
        Ok(self
            .reseal_text(stored.expose(), owner, SIGNING_SECRET)?
            .map(StoredSecret::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Uuid = Uuid::from_u128(0xA);
    const B: Uuid = Uuid::from_u128(0xB);

    fn key(byte: u8) -> SealingKey {
        SealingKey::parse(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn seals_opens_and_reseals_across_a_key_rotation() {
        let secret = SigningSecret::generate();
        let old = Sealer::new(Some(key(1)), None);
        let stored = old.seal(&secret, A);
        assert!(stored.expose().starts_with("enc:v2:"));
        assert!(
            !stored.expose().contains(&secret.expose()[6..]),
            "the secret is not in the stored form"
        );
        assert_eq!(old.key(&stored, A).unwrap(), secret);

        let rotated = Sealer::new(Some(key(2)), Some(key(1)));
        assert_eq!(
            rotated.key(&stored, A).unwrap(),
            secret,
            "the previous key still opens"
        );
        let resealed = rotated.reseal(&stored, A).unwrap().unwrap();
        assert!(resealed
            .expose()
            .starts_with(&format!("enc:v2:{}:", key(2).id())));
        assert_eq!(rotated.reseal(&resealed, A).unwrap(), None);
        let only_new = Sealer::new(Some(key(2)), None);
        assert_eq!(only_new.key(&resealed, A).unwrap(), secret);
        assert_eq!(
            only_new.key(&stored, A),
            Err(OpenError::UnknownKey(key(1).id().to_owned()))
        );
    }

    #[test]
    fn plain_secrets_stay_readable_and_damage_is_an_error() {
        let secret = SigningSecret::generate();
        let plain = Sealer::plain().seal(&secret, A);
        assert_eq!(plain.expose(), secret.expose());
        assert_eq!(
            Sealer::new(Some(key(3)), None).key(&plain, A).unwrap(),
            secret
        );
        let sealed = Sealer::new(Some(key(3)), None).seal(&secret, A);
        let mut broken = sealed.expose().to_owned();
        broken.truncate(broken.len() - 4);
        broken.push_str("AAAA");
        assert_eq!(
            Sealer::new(Some(key(3)), None).key(&StoredSecret::new(broken), A),
            Err(OpenError::Damaged)
        );
        assert!(SealingKey::parse("c2hvcnQ=").is_err());
        assert!(format!("{:?}", key(4)).starts_with("SealingKey("));
    }

    #[test]
    fn a_seal_opens_only_for_its_own_scenario() {
        let secret = SigningSecret::generate();
        let sealer = Sealer::new(Some(key(5)), None);
        let stored = sealer.seal(&secret, A);
        assert_eq!(sealer.key(&stored, A).unwrap(), secret);
        assert_eq!(
            sealer.key(&stored, B),
            Err(OpenError::Damaged),
            "copied into another scenario's row, it does not open"
        );
    }

    #[test]
    fn an_unbound_v1_seal_still_opens_and_is_resealed_bound() {
        let secret = SigningSecret::generate();
        let k = key(6);
        let nonce = [3u8; 24];
        let sealed = k
            .cipher
            .encrypt(XNonce::from_slice(&nonce), secret.expose().as_bytes())
            .unwrap();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        let v1 = StoredSecret::new(format!("enc:v1:{}:{}", k.id(), STANDARD.encode(blob)));
        let sealer = Sealer::new(Some(k), None);
        assert_eq!(sealer.key(&v1, A).unwrap(), secret);
        let bound = sealer.reseal(&v1, A).unwrap().expect("upgraded");
        assert!(bound.expose().starts_with("enc:v2:"));
        assert_eq!(sealer.key(&bound, A).unwrap(), secret);
        assert!(sealer.key(&bound, B).is_err());
        assert_eq!(sealer.reseal(&bound, A).unwrap(), None);
    }

    #[test]
    fn any_secret_text_is_sealed_bound_to_its_field_and_resealed_across_a_rotation() {
        let old = Sealer::new(Some(key(1)), None);
        let field = "after_call_headers:authorization";
        let stored = old.seal_text("Bearer k", A, field);
        assert!(stored.starts_with("enc:v2:") && !stored.contains("Bearer"));
        assert_eq!(old.open_text(&stored, A, field).unwrap(), "Bearer k");
        assert_eq!(
            old.open_text(&stored, A, "during_call_headers:authorization"),
            Err(OpenError::Damaged),
            "bound to its field"
        );
        assert_eq!(old.open_text(&stored, B, field), Err(OpenError::Damaged));
        let rotated = Sealer::new(Some(key(2)), Some(key(1)));
        let resealed = rotated.reseal_text(&stored, A, field).unwrap().unwrap();
        assert_eq!(rotated.reseal_text(&resealed, A, field).unwrap(), None);
        let only_new = Sealer::new(Some(key(2)), None);
        assert_eq!(only_new.open_text(&resealed, A, field).unwrap(), "Bearer k");
        assert_eq!(
            Sealer::plain().seal_text("v", A, field),
            "v",
            "no key: as it is"
        );
    }
}
