//! Encryption at rest for the outbox.
//!
//! Every payload in the outbox is sealed with ChaCha20-Poly1305 under an
//! [`OutboxKey`] that never enters the database: it lives in a key file
//! (created with mode 0600 on first start) or comes from the environment
//! variable [`KEY_ENV`]. The row id and the device id are the associated
//! data, so a sealed payload cannot be replayed under another row or device,
//! and a copied database file alone reveals no vital sign.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::UplinkError;

/// Environment variable that, when set, holds the outbox key as base64 of 32
/// bytes and takes precedence over the key file.
pub const KEY_ENV: &str = "WARDGATE_OUTBOX_KEY";

/// Length of a nonce stored beside each sealed payload.
pub const NONCE_LEN: usize = 12;

/// The 256-bit outbox key. Zeroed on drop, never logged.
pub struct OutboxKey {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for OutboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxKey(..)")
    }
}

impl OutboxKey {
    /// A key from raw bytes.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(bytes)),
        }
    }

    /// Parse a key given as base64 of exactly 32 bytes.
    ///
    /// # Errors
    /// [`UplinkError::Key`] naming `source` if it is not base64 of 32 bytes.
    pub fn from_base64(text: &str, source: &str) -> Result<Self, UplinkError> {
        let raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| UplinkError::Key {
                    source_name: source.to_owned(),
                    reason: format!(
                        "not base64 ({e}); generate one with `head -c32 /dev/urandom | base64`"
                    ),
                })?,
        );
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| UplinkError::Key {
            source_name: source.to_owned(),
            reason: format!("decodes to {} bytes, 32 needed", raw.len()),
        })?;
        let bytes = Zeroizing::new(bytes);
        Ok(Self::from_bytes(&bytes))
    }

    /// The key from [`KEY_ENV`] if set, otherwise from `path`, creating the
    /// file with a fresh random key and mode 0600 if it does not exist.
    ///
    /// # Errors
    /// [`UplinkError::Key`] if the variable or file is malformed, the file is
    /// readable by group or others, or it cannot be created.
    pub fn load_or_create(path: &Path) -> Result<Self, UplinkError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            return Self::from_base64(&text, KEY_ENV);
        }
        Self::load_or_create_file(path)
    }

    /// Like [`Self::load_or_create`] but ignoring the environment.
    ///
    /// # Errors
    /// As [`Self::load_or_create`].
    pub fn load_or_create_file(path: &Path) -> Result<Self, UplinkError> {
        let name = path.display().to_string();
        let key_err = |reason: String| UplinkError::Key {
            source_name: name.clone(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                check_private(path).map_err(key_err)?;
                Self::from_base64(&text, &name)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(bytes.as_mut());
                let text = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()),
                );
                let mut options = OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options
                    .open(path)
                    .map_err(|e| key_err(format!("cannot create key file: {e}")))?;
                file.write_all(text.as_bytes())
                    .and_then(|()| file.write_all(b"\n"))
                    .and_then(|()| file.sync_all())
                    .map_err(|e| key_err(format!("cannot write key file: {e}")))?;
                tracing::info!(path = %path.display(), "created new outbox encryption key");
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) => Err(key_err(format!("cannot read key file: {e}"))),
        }
    }

    /// Seal `plaintext` for row `id` of `device_id` under a fresh random
    /// nonce; returns the nonce and ciphertext||tag.
    ///
    /// # Errors
    /// [`UplinkError::Seal`] if the AEAD refuses (only for absurd lengths).
    pub fn seal(
        &self,
        id: i64,
        device_id: &str,
        plaintext: &[u8],
    ) -> Result<([u8; NONCE_LEN], Vec<u8>), UplinkError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(id, device_id);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| UplinkError::Seal { id })?;
        Ok((nonce, sealed))
    }

    /// Open a payload sealed by [`Self::seal`] for the same row and device.
    ///
    /// # Errors
    /// [`UplinkError::Open`] if the key, row id, device or bytes differ.
    pub fn open(
        &self,
        id: i64,
        device_id: &str,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, UplinkError> {
        if nonce.len() != NONCE_LEN {
            return Err(UplinkError::Open { id });
        }
        let aad = associated_data(id, device_id);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| UplinkError::Open { id })
    }
}

fn associated_data(id: i64, device_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + device_id.len() + 16);
    aad.extend_from_slice(b"wardgate-outbox-v1");
    aad.extend_from_slice(&id.to_be_bytes());
    aad.extend_from_slice(device_id.as_bytes());
    aad
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot stat key file: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "key file has mode {:o}; it must be readable by the gateway user only (`chmod 600 {}`)",
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let key = OutboxKey::from_bytes(&[7u8; 32]);
        let (nonce, sealed) = key.seal(42, "pump-07", b"{\"hr\":72}").unwrap();
        assert_eq!(
            key.open(42, "pump-07", &nonce, &sealed).unwrap(),
            b"{\"hr\":72}"
        );
        // Bound to the row id and the device id.
        assert!(key.open(43, "pump-07", &nonce, &sealed).is_err());
        assert!(key.open(42, "pump-08", &nonce, &sealed).is_err());
        // Another key cannot open it.
        let other = OutboxKey::from_bytes(&[8u8; 32]);
        assert!(other.open(42, "pump-07", &nonce, &sealed).is_err());
        // Tampering is detected.
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert!(key.open(42, "pump-07", &nonce, &bad).is_err());
    }

    #[test]
    fn key_file_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.key");
        let a = OutboxKey::load_or_create_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = OutboxKey::load_or_create_file(&path).unwrap();
        let (nonce, sealed) = a.seal(1, "d", b"x").unwrap();
        assert_eq!(b.open(1, "d", &nonce, &sealed).unwrap(), b"x");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_world_readable_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.key");
        OutboxKey::load_or_create_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = OutboxKey::load_or_create_file(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    /// A row sealed by the gateway before the shared crate (layout: nonce
    /// apart, ciphertext||tag; AAD "wardgate-outbox-v1" || id (i64 BE) ||
    /// device id), computed with Python `cryptography`'s ChaCha20Poly1305.
    #[test]
    fn opens_rows_sealed_in_the_existing_format() {
        let key =
            OutboxKey::from_base64("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=", "test").unwrap();
        let nonce = hex::decode("0a0b0c0d0e0f101112131415").unwrap();
        let sealed = hex::decode("3f5cb1b60ff739c7f7b47c670c12ae26487cb27e908581c3f8").unwrap();
        assert_eq!(
            key.open(42, "pump-07", &nonce, &sealed).unwrap(),
            b"{\"hr\":72}"
        );
        assert!(key.open(42, "pump-08", &nonce, &sealed).is_err());
    }

    #[test]
    fn refuses_short_key() {
        let err = OutboxKey::from_base64("AAAA", "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("32 needed"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn seal_open_round_trips_any_payload(
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            id in proptest::num::i64::ANY,
            device in "[a-z0-9-]{1,32}",
        ) {
            let key = OutboxKey::from_bytes(&[3u8; 32]);
            let (nonce, sealed) = key.seal(id, &device, &payload).unwrap();
            proptest::prop_assert_eq!(sealed.len(), payload.len() + 16);
            proptest::prop_assert_eq!(key.open(id, &device, &nonce, &sealed).unwrap(), payload);
            proptest::prop_assert!(key.open(id.wrapping_add(1), &device, &nonce, &sealed).is_err());
        }
    }
}
