//! The bearer token itself: `wgt_<id>_<secret>`, where `<id>` (16 hex
//! digits) is public and names the row and `<secret>` is 256 random bits
//! (base64url). Only the SHA-256 of the whole string is ever stored; the
//! string is shown once, at creation, zeroed on drop and never logged.

use std::fmt;

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::name::TokenId;
use crate::access::refusal::Refusal;

/// Prefix of every token.
pub const PREFIX: &str = "wgt_";
const SECRET_BYTES: usize = 32;
/// Length of the base64url (unpadded) secret part.
const SECRET_CHARS: usize = 43;

/// A bearer token as presented or as just issued. Zeroed on drop, never
/// logged (its `Debug` shows only the id).
#[derive(Clone)]
pub struct BearerToken {
    id: TokenId,
    full: Zeroizing<String>,
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken({}, ..)", self.id)
    }
}

impl BearerToken {
    /// Parse a presented token string.
    ///
    /// # Errors
    /// [`Refusal::MalformedToken`] if it does not have the `wgt_<id>_<secret>` shape.
    pub fn parse(s: &str) -> Result<Self, Refusal> {
        let rest = s.strip_prefix(PREFIX).ok_or(Refusal::MalformedToken)?;
        let (id, secret) = rest.split_once('_').ok_or(Refusal::MalformedToken)?;
        let id = TokenId::parse(id).map_err(|_| Refusal::MalformedToken)?;
        let secret_ok = secret.len() == SECRET_CHARS
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !secret_ok {
            return Err(Refusal::MalformedToken);
        }
        Ok(Self {
            id,
            full: Zeroizing::new(s.to_owned()),
        })
    }

    /// A fresh token: random id and 256-bit secret from the OS generator.
    pub(in crate::access) fn generate() -> Self {
        let id = TokenId::random();
        let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut());
        let encoded = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_ref()),
        );
        let full = Zeroizing::new(format!("{PREFIX}{id}_{}", encoded.as_str()));
        Self { id, full }
    }

    /// The public id inside the token.
    #[must_use]
    pub fn id(&self) -> &TokenId {
        &self.id
    }

    /// The full secret string, to hand to its holder once.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.full
    }

    /// The SHA-256 of the whole token string: what the store keeps.
    pub(in crate::access) fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.full.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn bearer_parse_never_panics(s in ".{0,120}") {
            let _ = BearerToken::parse(&s);
        }

        #[test]
        fn generated_tokens_always_parse_back(_seed in 0u8..8) {
            let t = BearerToken::generate();
            let parsed = BearerToken::parse(t.expose()).unwrap();
            proptest::prop_assert_eq!(parsed.id(), t.id());
            proptest::prop_assert_eq!(parsed.hash(), t.hash());
        }
    }
}
