//! TOTP secrets sealed at rest.
//!
//! Bearer tokens are stored only as hashes, but a TOTP secret must be
//! readable to check a code, so it is sealed with ChaCha20-Poly1305 under a
//! key that never enters the database: the environment variable
//! [`KEY_ENV`] (base64 of 32 bytes) or the file [`KEY_FILE`] beside the
//! database (created 0600 on first use). The token id is the associated
//! data, so a sealed secret cannot be moved to another token row, and a
//! copied database (a backup) alone does not reveal any second factor.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::token::TokenId;
use super::totp::TotpSecret;
use super::AdminError;

/// Environment variable that, when set, holds the key (base64 of 32 bytes).
pub const KEY_ENV: &str = "WARDGATE_ADMIN_TOTP_KEY";
/// Key file name, in the directory of the gateway database.
pub const KEY_FILE: &str = "admin-totp.key";
const NONCE_LEN: usize = 12;
const AAD_PREFIX: &[u8] = b"wardgate/admin/totp/v1:";

/// The sealing key. Never logged.
pub struct TotpVault {
    cipher: ChaCha20Poly1305,
    origin: String,
}

impl std::fmt::Debug for TotpVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TotpVault({})", self.origin)
    }
}

impl TotpVault {
    /// A vault over raw key bytes.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 32], origin: &str) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(bytes)),
            origin: origin.to_owned(),
        }
    }

    fn from_base64(text: &str, origin: &str) -> Result<Self, AdminError> {
        let bad = |problem: String| AdminError::TotpKey {
            origin: origin.to_owned(),
            problem,
        };
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| bad(format!("not base64 ({e})")))?,
        );
        let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(
            raw.as_slice()
                .try_into()
                .map_err(|_| bad(format!("decodes to {} bytes, 32 needed", raw.len())))?,
        );
        Ok(Self::from_bytes(&bytes, origin))
    }

    /// The key from [`KEY_ENV`], else from `dir/`[`KEY_FILE`], creating that
    /// file (mode 0600) with a fresh random key if it does not exist.
    ///
    /// # Errors
    /// [`AdminError::TotpKey`] if the key is malformed, the file is readable
    /// by group or others, or it cannot be read or created.
    pub fn load_or_create(dir: &Path) -> Result<Self, AdminError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            return Self::from_base64(&text, KEY_ENV);
        }
        let path: PathBuf = dir.join(KEY_FILE);
        let origin = path.display().to_string();
        let bad = |problem: String| AdminError::TotpKey {
            origin: origin.clone(),
            problem,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(&path)
                        .map_err(|e| bad(e.to_string()))?
                        .permissions()
                        .mode();
                    if mode & 0o077 != 0 {
                        return Err(bad(format!(
                            "readable by group or others (mode {:o}); run `chmod 600` on it",
                            mode & 0o777
                        )));
                    }
                }
                Self::from_base64(&text, &origin)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(bytes.as_mut());
                let text = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()),
                );
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                match options.open(&path) {
                    Ok(mut file) => {
                        file.write_all(text.as_bytes())
                            .and_then(|()| file.write_all(b"\n"))
                            .and_then(|()| file.sync_all())
                            .map_err(|e| bad(format!("cannot write: {e}")))?;
                        tracing::info!(path = %path.display(), "created admin TOTP sealing key");
                        Ok(Self::from_bytes(&bytes, &origin))
                    }
                    // Another process (CLI and gateway) created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(dir)
                    }
                    Err(e) => Err(bad(format!("cannot create: {e}"))),
                }
            }
            Err(e) => Err(bad(format!("cannot read: {e}"))),
        }
    }

    fn aad(id: &TokenId) -> Vec<u8> {
        [AAD_PREFIX, id.as_str().as_bytes()].concat()
    }

    /// Seal `secret` for token `id`: nonce || ciphertext || tag.
    ///
    /// # Errors
    /// [`AdminError::TotpKey`] if the AEAD refuses (not for real inputs).
    pub fn seal(&self, id: &TokenId, secret: &TotpSecret) -> Result<Vec<u8>, AdminError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = Self::aad(id);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| AdminError::TotpKey {
                origin: self.origin.clone(),
                problem: "sealing failed".into(),
            })?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// Open what [`TotpVault::seal`] produced for the same token id.
    ///
    /// # Errors
    /// [`AdminError::TotpKey`] if the blob was sealed under another key or
    /// for another token, or was altered.
    pub fn open(&self, id: &TokenId, blob: &[u8]) -> Result<TotpSecret, AdminError> {
        let refused = || {
            AdminError::TotpKey {
            origin: self.origin.clone(),
            problem: format!(
                "the TOTP secret of token {id} does not open under this key (wrong or replaced key file, or an altered row); \
                 restore the key file from backup or re-issue the token with `gateway access token create --totp`"
            ),
        }
        };
        if blob.len() <= NONCE_LEN {
            return Err(refused());
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let aad = Self::aad(id);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| refused())?;
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
                Err(AdminError::TotpKey { .. })
            ));
        }
    }
}
