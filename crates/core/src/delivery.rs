//! A delivery's kind, state and why one was cancelled: each stored as text
//! (`deliveries.kind`, `.state`, `.last_error`) and an enum everywhere else.
//!
//! With the `sqlx` feature each is also an `sqlx::Type` of Postgres `text`,
//! so the store reads and writes them as they are. (The derive is a trait
//! impl: this crate still does no IO.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// An enum stored as text: its variants and their names, `as_str`,
/// `FromStr` (refusing other text as a bad `field`), `Display` and serde.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($field:literal, $code:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
        #[cfg_attr(feature = "sqlx", sqlx(type_name = "text", rename_all = "snake_case"))]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = FieldError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    FieldError::new(
                        $field,
                        $code,
                        format!("{} must be one of {}", $field, names.join(", ")),
                    )
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// The two webhooks a call produces.
    pub enum DeliveryKind ("kind", "invalid_kind") {
        /// Sent at the moment of the call (when the platform dials the client).
        DuringCall = "during_call",
        /// Sent once the call is over, with status, duration and recording.
        AfterCall = "after_call",
    }
}

text_enum! {
    /// Where a delivery stands.
    pub enum DeliveryState ("state", "invalid_state") {
        /// Not yet delivered: due at `next_attempt_at`, or waiting for its
        /// call's during-call delivery (`blocked_by`).
        Pending = "pending",
        /// A 2xx came back.
        Delivered = "delivered",
        /// Its retry schedule ran out.
        Failed = "failed",
        /// Never to be sent; `last_error` says why ([`CancelReason`]).
        Cancelled = "cancelled",
    }
}

text_enum! {
    /// Why a delivery was cancelled (its `last_error`).
    pub enum CancelReason ("reason", "invalid_reason") {
        /// The scenario was saved without this kind's URL.
        UrlRemoved = "url_removed",
        /// The scenario was deleted.
        ScenarioDeleted = "scenario_deleted",
        /// A start that arrived after its call's after-call webhook had gone
        /// out: a "call in progress" after "call ended" would mislead.
        CallAlreadyEnded = "call_already_ended",
    }
}

impl DeliveryState {
    /// Delivered, failed or cancelled: nothing more happens to it by itself.
    pub fn is_final(self) -> bool {
        self != Self::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in DeliveryKind::ALL {
            assert_eq!(k.as_str().parse::<DeliveryKind>().unwrap(), *k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for s in DeliveryState::ALL {
            assert_eq!(s.as_str().parse::<DeliveryState>().unwrap(), *s);
        }
        for r in CancelReason::ALL {
            assert_eq!(r.to_string().parse::<CancelReason>().unwrap(), *r);
        }
        assert_eq!("sent".parse::<DeliveryState>().unwrap_err().field, "state");
        assert_eq!(
            "x".parse::<DeliveryKind>().unwrap_err().message,
            "kind must be one of during_call, after_call"
        );
    }
}
