//! TOTP secrets sealed at rest.
//!
//! Bearer tokens are stored only as hashes, but a TOTP secret must be
//! readable to check a code, so it is sealed (ChaCha20-Poly1305, with
//! `wardgate-tls`' [`SealingKey`]) under a key that never enters the
//! database: the environment variable
//! [`KEY_ENV`] (base64 of 32 bytes) or the file [`KEY_FILE`] beside the
//! database (created 0600 on first use). The token id is the associated
//! data, so a sealed secret cannot be moved to another token row, and a
//! copied database (a backup) alone does not reveal any second factor.

use std::path::Path;

use wardgate_tls::SealingKey;

use super::code::{TotpFormatError, TotpSecret};
use crate::access::name::TokenId;

/// Environment variable that, when set, holds the key (base64 of 32 bytes).
pub const KEY_ENV: &str = "WARDGATE_ADMIN_TOTP_KEY";
/// Key file name, in the directory of the gateway database.
pub const KEY_FILE: &str = "admin-totp.key";
const AAD_PREFIX: &[u8] = b"wardgate/admin/totp/v1:";

/// The sealing key. Never logged.
pub struct TotpVault {
    key: SealingKey,
}

impl std::fmt::Debug for TotpVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TotpVault({})", self.key.origin())
    }
}

/// What the vault could not do. Its own type (not `AccessError`) so that the
/// vault stays a leaf below the token store.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The TOTP sealing key is missing, malformed or does not fit.
    #[error("admin TOTP key: {source}{advice}")]
    Key {
        /// What is wrong with the key or the sealed secret.
        #[source]
        source: wardgate_tls::SealError,
        /// What to do, beyond what `source` says (may be empty).
        advice: String,
    },
    /// An opened secret is not a usable TOTP secret.
    #[error(transparent)]
    Secret(#[from] TotpFormatError),
}

fn key_error(source: wardgate_tls::SealError) -> VaultError {
    VaultError::Key {
        source,
        advice: String::new(),
    }
}

impl TotpVault {
    /// A vault over raw key bytes.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 32], origin: &str) -> Self {
        Self {
            key: SealingKey::from_bytes(bytes, origin),
        }
    }

    /// The key from [`KEY_ENV`], else from `dir/`[`KEY_FILE`], creating that
    /// file (mode 0600) with a fresh random key if it does not exist (safe
    /// when the gateway and a CLI command do so at once).
    ///
    /// # Errors
    /// [`VaultError::Key`] if the key is malformed, the file is readable
    /// by group or others, or it cannot be read or created.
    pub fn load_or_create(dir: &Path) -> Result<Self, VaultError> {
        let key = SealingKey::load_or_create(KEY_ENV, &dir.join(KEY_FILE)).map_err(key_error)?;
        Ok(Self { key })
    }

    fn aad(id: &TokenId) -> Vec<u8> {
        [AAD_PREFIX, id.as_str().as_bytes()].concat()
    }

    /// Seal `secret` for token `id`: nonce || ciphertext || tag.
    ///
    /// # Errors
    /// [`VaultError::Key`] if the AEAD refuses (not for real inputs).
    pub fn seal(&self, id: &TokenId, secret: &TotpSecret) -> Result<Vec<u8>, VaultError> {
        self.key
            .seal_blob(&Self::aad(id), secret.as_bytes())
            .map_err(key_error)
    }

    /// Open what [`TotpVault::seal`] produced for the same token id.
    ///
    /// # Errors
    /// [`VaultError::Key`] if the blob was sealed under another key or
    /// for another token, or was altered.
    pub fn open(&self, id: &TokenId, blob: &[u8]) -> Result<TotpSecret, VaultError> {
        let plain = self
            .key
            .open_blob(&Self::aad(id), blob)
            .map_err(|source| VaultError::Key {
                source,
                advice: format!(
                    "; the TOTP secret of token {id} is affected: restore the key file from backup \
                     or re-issue the token with `gateway access token create --totp`"
                ),
            })?;
        Ok(TotpSecret::from_bytes(plain)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TOTP secret sealed before the shared crate (layout: nonce ||
    /// ciphertext || tag; AAD "wardgate/admin/totp/v1:" || token id),
    /// computed with Python `cryptography`'s ChaCha20Poly1305.
    #[test]
    fn opens_secrets_sealed_in_the_existing_format() {
        let bytes: [u8; 32] = std::array::from_fn(|i| u8::try_from(i + 1).unwrap());
        let vault = TotpVault::from_bytes(&bytes, "test");
        let blob = hex::decode(
            "a1a2a3a4a5a6a7a8a9aaabace41f455192c6ff710f271d333096730c27614a361300e1679a5a41d2b5ad20c695150b1d",
        )
        .unwrap();
        let id = TokenId::parse("0123456789abcdef").unwrap();
        assert_eq!(
            vault.open(&id, &blob).unwrap().as_bytes(),
            b"12345678901234567890"
        );
        let other = TokenId::parse("fedcba9876543210").unwrap();
        assert!(vault.open(&other, &blob).is_err());
    }

    #[test]
    fn seals_per_token_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let vault = TotpVault::load_or_create(dir.path()).unwrap();
        let again = TotpVault::load_or_create(dir.path()).unwrap();
        let id = TokenId::parse("0123456789abcdef").unwrap();
        let other = TokenId::parse("fedcba9876543210").unwrap();
        let secret = TotpSecret::generate();
        let blob = vault.seal(&id, &secret).unwrap();
        assert!(!blob
            .windows(secret.as_bytes().len())
            .any(|w| w == secret.as_bytes()));
        assert_eq!(
            again.open(&id, &blob).unwrap().as_bytes(),
            secret.as_bytes()
        );
        assert!(vault.open(&other, &blob).is_err(), "bound to its token id");
        let mut altered = blob.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert!(vault.open(&id, &altered).is_err());
        let stranger = TotpVault::from_bytes(&[7; 32], "test");
        assert!(
            stranger.open(&id, &blob).is_err(),
            "another key cannot open it"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(KEY_FILE);
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                TotpVault::load_or_create(dir.path()),
                Err(VaultError::Key { .. })
            ));
        }
    }
}
