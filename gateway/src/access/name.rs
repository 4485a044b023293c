//! The two names a token has: its public id (16 lowercase hex digits, the
//! row key) and a human label for its holder. Both are checked once, here,
//! so neither can carry anything unexpected into SQL, logs or audit rows.

use std::fmt;

use rand::RngCore;
use serde::Serialize;

/// Hex digits of a token id.
pub const ID_HEX: usize = 16;

/// A token id or name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A token id is not 16 lowercase hex digits.
    #[error("`{0}` is not a token id (16 lowercase hex digits); see `gateway access token list`")]
    InvalidTokenId(String),
    /// A token name has characters outside the allowed set.
    #[error("`{0}` is not a token name: use 1-64 characters from A-Z a-z 0-9 . _ @ -")]
    InvalidTokenName(String),
}

/// The public id of a token: 16 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TokenId(String);

impl TokenId {
    /// Parse a token id.
    ///
    /// # Errors
    /// [`NameError::InvalidTokenId`] unless it is 16 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.len() == ID_HEX && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::InvalidTokenId(s.chars().take(40).collect()))
        }
    }

    /// A fresh random id from the operating system's generator.
    pub(in crate::access) fn random() -> Self {
        let mut bytes = [0u8; ID_HEX / 2];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A human label for a token (who or what holds it): 1 to 64 characters
/// from `A-Z a-z 0-9 . _ @ -`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TokenName(String);

impl TokenName {
    /// Parse a token name.
    ///
    /// # Errors
    /// [`NameError::InvalidTokenName`] if empty, too long or with other characters.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::InvalidTokenName(s.chars().take(80).collect()))
        }
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_parsed() {
        assert!(TokenName::parse("ops.alice@ward-3").is_ok());
        for bad in ["", "a b", "x;drop", &"a".repeat(65)] {
            assert!(TokenName::parse(bad).is_err(), "{bad}");
        }
        assert!(TokenId::parse("0123456789abcdef").is_ok());
        assert!(TokenId::parse("0123456789ABCDEF").is_err());
        assert!(TokenId::parse("../../etc").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsed_names_and_ids_hold_only_safe_characters(s in ".{0,80}") {
            if let Ok(name) = TokenName::parse(&s) {
                proptest::prop_assert!(name.as_str().bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b';'));
            }
            if let Ok(id) = TokenId::parse(&s) {
                proptest::prop_assert_eq!(id.as_str().len(), 16);
            }
        }
    }
}
