//! callhook's domain: scenarios' settings, calls, call statuses, delivery
//! kinds and states, the exact webhook payload bytes, `{placeholder}`
//! expansion, the persistent retry schedule, the endpoint health state
//! machine, Standard Webhooks signing and sealing signing secrets at rest.
//!
//! This crate does no IO of any kind (no database, no network, no clock
//! reads it is not handed), so everything here is a pure function whose tests
//! run in milliseconds. Types only hold valid values: parse at the edge with
//! the `parse`/`from_*` constructors and pass the typed value on.

#[macro_use]
mod macros;

pub mod call;
pub mod custom_fields;
pub mod delivery;
pub mod error;
pub mod filter;
pub mod headers;
pub mod health;
pub mod payload;
pub mod phone;
pub mod schedule;
pub mod sealing;
pub mod signing;
pub mod timezone;
pub mod webhook_url;
pub mod weight;

pub use call::{Call, CallEnd, CallStatus, Visit};
pub use custom_fields::{CustomField, CustomFields};
pub use delivery::{
    AttemptError, CancelReason, DeliveryKind, DeliveryState, EndpointKind, HeldReason, LastError,
    PriorityClass, DEFAULT_ENDPOINT_MAX_IN_FLIGHT,
};
pub use error::FieldError;
pub use filter::{Condition, Filter};
pub use headers::Header;
pub use health::{EndpointState, Health, HealthPolicy, Observed, Transition};
pub use payload::{build_payload, build_payload_within};
pub use phone::PhoneNumber;
pub use schedule::RetrySchedule;
pub use sealing::{OpenError, Sealer, SealingKey};
pub use signing::{SigningSecret, StoredSecret};
pub use timezone::Timezone;
pub use webhook_url::WebhookUrl;
pub use weight::DEFAULT_MAX_PAYLOAD_BYTES;

/// A stable fingerprint of a value's JSON form: two ingest events with the
/// same meaning have the same fingerprint. The first 128 bits of its SHA-256,
/// in hex (32 characters): enough to tell a repeat from a conflict, and half
/// the bytes the whole digest took in every call row.
pub fn fingerprint<T: serde::Serialize>(value: &T) -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(value).expect("fingerprinted values serialise");
    hex::encode(&sha2::Sha256::digest(bytes)[..16])
}

/// Whether a stored fingerprint is the one [`fingerprint`] gives now. A call
/// stored before fingerprints were shortened holds the whole digest (64
/// characters), whose first half is today's.
pub fn same_fingerprint(stored: &str, fresh: &str) -> bool {
    stored == fresh || (stored.len() == 64 && stored.get(..fresh.len()) == Some(fresh))
}

#[cfg(test)]
mod tests {
    use super::{fingerprint, same_fingerprint};
    use sha2::Digest;

    #[test]
    fn a_fingerprint_is_the_first_half_of_the_digest_and_still_matches_a_whole_one_stored_before() {
        let event = serde_json::json!({"id": "call-1", "caller": "79990000000"});
        let fresh = fingerprint(&event);
        assert_eq!(fresh.len(), 32);
        let whole = hex::encode(sha2::Sha256::digest(serde_json::to_vec(&event).unwrap()));
        assert!(same_fingerprint(&fresh, &fresh));
        assert!(
            same_fingerprint(&whole, &fresh),
            "a call stored with the whole digest"
        );
        let other = fingerprint(&serde_json::json!({"id": "call-1", "caller": "79990000001"}));
        assert!(!same_fingerprint(&fresh, &other));
        assert!(!same_fingerprint(&whole, &other));
        assert!(
            !same_fingerprint(&whole[..40], &fresh),
            "only a whole digest is read by its half"
        );
    }
}
