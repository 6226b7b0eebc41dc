use std::fmt;

use crate::FieldError;

/// A phone number as digits only, 10 to 15 of them (E.164 without the `+`),
/// e.g. `78005552233`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub const MIN_DIGITS: usize = 10;
    pub const MAX_DIGITS: usize = 15;

    /// Normalises what people write (`+7 (800) 555-22-33`, `8-800-555-22-33`
    /// stays `88005552233`) to digits. Only digits, spaces, `+`, `-`, `.`,
    /// `(` and `)` are accepted; anything else is an error rather than
    /// silently dropped, so `7800555223x` is not mistaken for a number.
    pub fn parse(input: &str, field: &str) -> Result<Self, FieldError> {
        let mut digits = String::with_capacity(input.len());
        for c in input.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '+' | '-' | '.' | '(' | ')' => {}
                other => {
                    return Err(FieldError::new(
                        field,
                        "invalid_phone",
                        format!(
                        "phone number may hold only digits, spaces and + - . ( ); found {other:?}"
                    ),
                    ))
                }
            }
        }
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&digits.len()) {
            return Err(FieldError::new(
                field,
                "invalid_phone",
                format!(
                    "phone number must have {} to {} digits, got {}",
                    Self::MIN_DIGITS,
                    Self::MAX_DIGITS,
                    digits.len()
                ),
            ));
        }
        Ok(Self(digits))
    }

    /// Wraps digits read back from the database, where only parsed numbers are written.
    pub fn from_trusted(digits: String) -> Self {
        Self(digits)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl serde::Serialize for PhoneNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_formatted_number() {
        let n = PhoneNumber::parse("+7 (800) 555-22-33", "number").unwrap();
        assert_eq!(n.as_str(), "78005552233");
    }

    #[test]
    fn rejects_short_long_and_letters() {
        assert_eq!(
            PhoneNumber::parse("12345", "n").unwrap_err().code,
            "invalid_phone"
        );
        assert!(PhoneNumber::parse("1234567890123456", "n").is_err());
        assert_eq!(
            PhoneNumber::parse("7800555223x", "caller")
                .unwrap_err()
                .field,
            "caller"
        );
    }

    proptest! {
        #[test]
        fn parse_keeps_exactly_the_digits(s in "[0-9 ()+.-]{0,30}") {
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            match PhoneNumber::parse(&s, "n") {
                Ok(n) => prop_assert_eq!(n.as_str(), digits.as_str()),
                Err(_) => prop_assert!(digits.len() < 10 || digits.len() > 15),
            }
        }

        #[test]
        fn parse_is_idempotent(s in "[0-9]{10,15}") {
            let once = PhoneNumber::parse(&s, "n").unwrap();
            let twice = PhoneNumber::parse(once.as_str(), "n").unwrap();
            prop_assert_eq!(once, twice);
        }
    }
}
