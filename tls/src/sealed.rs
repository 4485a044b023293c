//! Values sealed at rest under a key that never enters the database.
//!
//! A [`SealingKey`] is 256 bits, taken from an environment variable (base64
//! of 32 bytes) when it is set, else from a key file created with mode 0600
//! on first use. Two processes starting at once (the gateway and a CLI
//! command) agree on one key: a new key is written under a temporary name and
//! linked into place only if no file exists yet, and whoever loses that race,
//! like the winner, reads back the file that is there. An existing key file
//! readable by group or others is refused ([`crate::keyfile`]).
//!
//! Sealing is ChaCha20-Poly1305 with a fresh random 96-bit nonce per value
//! and caller-given associated data, which binds a sealed value to where it
//! belongs (a row id, a token id): moved elsewhere it no longer opens. The
//! byte layout is the callers' contract with their databases and does not
//! change: the nonce (12 bytes) and the ciphertext with its 16-byte tag,
//! either apart ([`SealingKey::seal`]) or concatenated
//! ([`SealingKey::seal_blob`]). The key is zeroed on drop and never printed.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::keyfile::{self, KeyFileError};

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// Nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// Authentication tag length in bytes (appended to the ciphertext).
pub const TAG_LEN: usize = 16;

/// How a new key is suggested to operators.
const GENERATE_HINT: &str = "generate one with `head -c32 /dev/urandom | base64`";

/// Why a key could not be loaded, or a value not sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key text is not base64.
    #[error("the key from {origin} is not base64 ({source}); {GENERATE_HINT}")]
    NotBase64 {
        /// The variable or file.
        origin: String,
        /// The decoder's reason.
        #[source]
        source: base64::DecodeError,
    },
    /// The key text decodes to the wrong length.
    #[error("the key from {origin} decodes to {len} bytes, 32 needed; {GENERATE_HINT}")]
    WrongLength {
        /// The variable or file.
        origin: String,
        /// Bytes decoded.
        len: usize,
    },
    /// The environment variable is set but not UTF-8 text.
    #[error("the key variable {origin} is set but is not text; set it to base64 of 32 bytes or unset it to use the key file")]
    NotText {
        /// The variable.
        origin: String,
    },
    /// The key file is unprotected, unreadable or cannot be created.
    #[error("the key file is refused: {0}")]
    KeyFile(#[source] KeyFileError),
    /// The key file exists but cannot be read.
    #[error("cannot read the key file {}: {source}; check that the service user may read it", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file kept disappearing while it was being created and read.
    #[error("the key file {} disappeared while it was being created; check that nothing else removes files in its directory", path.display())]
    Vanished {
        /// The file.
        path: PathBuf,
    },
    /// The cipher refused to seal (only for absurd lengths).
    #[error("cannot seal a value of {len} bytes under the key from {origin}")]
    Seal {
        /// The variable or file of the key.
        origin: String,
        /// Plaintext length.
        len: usize,
    },
    /// A sealed value does not open.
    #[error("a sealed value does not open under the key from {origin}: the key is not the one it was sealed with (replaced key file or variable), it belongs elsewhere (other associated data), or it was altered")]
    Open {
        /// The variable or file of the key.
        origin: String,
    },
}

/// A 256-bit ChaCha20-Poly1305 key and where it came from. Zeroed on drop;
/// Debug shows the origin only.
pub struct SealingKey {
    cipher: ChaCha20Poly1305,
    origin: String,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealingKey({})", self.origin)
    }
}

impl SealingKey {
    /// A key over raw bytes; `origin` names it in errors.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; KEY_LEN], origin: impl Into<String>) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(bytes)),
            origin: origin.into(),
        }
    }

    /// A key given as base64 of exactly 32 bytes (surrounding whitespace
    /// ignored).
    ///
    /// # Errors
    /// [`SealError::NotBase64`] or [`SealError::WrongLength`] naming `origin`.
    pub fn from_base64(text: &str, origin: impl Into<String>) -> Result<Self, SealError> {
        let origin = origin.into();
        let raw = match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
            Ok(raw) => Zeroizing::new(raw),
            Err(source) => return Err(SealError::NotBase64 { origin, source }),
        };
        let Ok(bytes) = <[u8; KEY_LEN]>::try_from(raw.as_slice()) else {
            return Err(SealError::WrongLength {
                origin,
                len: raw.len(),
            });
        };
        let bytes = Zeroizing::new(bytes);
        Ok(Self::from_bytes(&bytes, origin))
    }

    /// The key from the environment variable `env_var` when it is set
    /// (no file is touched then), else [`SealingKey::load_or_create_file`].
    ///
    /// # Errors
    /// As [`SealingKey::from_base64`] for the variable (a malformed variable
    /// is refused, never silently replaced), or as
    /// [`SealingKey::load_or_create_file`].
    pub fn load_or_create(env_var: &str, path: &Path) -> Result<Self, SealError> {
        match std::env::var(env_var) {
            Ok(text) => Self::from_base64(&Zeroizing::new(text), env_var),
            Err(std::env::VarError::NotUnicode(_)) => Err(SealError::NotText {
                origin: env_var.to_owned(),
            }),
            Err(std::env::VarError::NotPresent) => Self::load_or_create_file(path),
        }
    }

    /// The key in the file `path` (base64 text), creating it with a fresh
    /// random key and mode 0600 if it does not exist. Safe when several
    /// processes do this at once: all end up with the key in the file.
    ///
    /// # Errors
    /// [`SealError::KeyFile`] if the file is readable by group or others or
    /// cannot be created, [`SealError::Read`], or a malformed key.
    pub fn load_or_create_file(path: &Path) -> Result<Self, SealError> {
        let origin = path.display().to_string();
        // Read; if absent create (losing a race is fine) and read again.
        for _ in 0..3 {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let text = Zeroizing::new(text);
                    keyfile::check_private(path).map_err(SealError::KeyFile)?;
                    return Self::from_base64(&text, origin);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
                    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
                    let mut text = Zeroizing::new(
                        base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()),
                    );
                    text.push('\n');
                    match keyfile::write_private_new(path, text.as_bytes()) {
                        Ok(()) => {
                            tracing::info!(path = %path.display(), "created a new sealing key file");
                        }
                        // Another process created it first: use theirs.
                        Err(KeyFileError::Exists { .. }) => {}
                        Err(e) => return Err(SealError::KeyFile(e)),
                    }
                }
                Err(source) => {
                    return Err(SealError::Read {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
        }
        Err(SealError::Vanished {
            path: path.to_path_buf(),
        })
    }

    /// Where the key came from (variable name or file path).
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Seal `plaintext` bound to `aad` under a fresh random nonce; returns
    /// the nonce and the ciphertext with its tag.
    ///
    /// # Errors
    /// [`SealError::Seal`] if the cipher refuses (only for absurd lengths).
    pub fn seal(
        &self,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<([u8; NONCE_LEN], Vec<u8>), SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError::Seal {
                origin: self.origin.clone(),
                len: plaintext.len(),
            })?;
        Ok((nonce, sealed))
    }

    /// Open what [`SealingKey::seal`] produced for the same `aad`.
    ///
    /// # Errors
    /// [`SealError::Open`] if the key, the associated data, the nonce or the
    /// bytes differ.
    pub fn open(&self, aad: &[u8], nonce: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let refused = || SealError::Open {
            origin: self.origin.clone(),
        };
        if nonce.len() != NONCE_LEN {
            return Err(refused());
        }
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| refused())
    }

    /// As [`SealingKey::seal`], as one blob: nonce || ciphertext || tag.
    ///
    /// # Errors
    /// As [`SealingKey::seal`].
    pub fn seal_blob(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let (nonce, sealed) = self.seal(aad, plaintext)?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// Open a blob of [`SealingKey::seal_blob`].
    ///
    /// # Errors
    /// [`SealError::Open`] as [`SealingKey::open`], also for a blob too
    /// short to hold a nonce and a tag.
    pub fn open_blob(&self, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, SealError> {
        if blob.len() <= NONCE_LEN {
            return Err(SealError::Open {
                origin: self.origin.clone(),
            });
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        self.open(aad, nonce, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Env var that makes [`child_process_seals`] act (set only by the
    /// parent test, for its children).
    const CHILD_PATH_ENV: &str = "WARDGATE_TLS_TEST_CHILD_KEY_PATH";

    #[test]
    fn round_trip_and_binding() {
        let key = SealingKey::from_bytes(&[7; KEY_LEN], "test");
        let (nonce, sealed) = key.seal(b"row 42", b"{\"hr\":72}").unwrap();
        assert_eq!(sealed.len(), 9 + TAG_LEN);
        assert_eq!(
            key.open(b"row 42", &nonce, &sealed).unwrap(),
            b"{\"hr\":72}"
        );
        let err = key.open(b"row 43", &nonce, &sealed).unwrap_err();
        assert!(matches!(err, SealError::Open { .. }), "wrong AAD refused");
        assert!(err.to_string().contains("test"), "{err}");
        let other = SealingKey::from_bytes(&[8; KEY_LEN], "other");
        assert!(other.open(b"row 42", &nonce, &sealed).is_err());
        let mut bad = sealed.clone();
        bad[0] ^= 1;
        assert!(key.open(b"row 42", &nonce, &bad).is_err());
        assert!(key.open(b"row 42", &nonce[..11], &sealed).is_err());
        // Two seals of the same value differ (fresh nonces).
        assert_ne!(
            key.seal(b"a", b"x").unwrap().0,
            key.seal(b"a", b"x").unwrap().0
        );

        let blob = key.seal_blob(b"token", b"secret").unwrap();
        assert_eq!(blob.len(), NONCE_LEN + 6 + TAG_LEN);
        assert_eq!(key.open_blob(b"token", &blob).unwrap(), b"secret");
        assert!(key.open_blob(b"other", &blob).is_err());
        assert!(key.open_blob(b"token", &blob[..NONCE_LEN]).is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key =
            SealingKey::from_base64("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=", "WARDGATE_X")
                .unwrap();
        assert_eq!(format!("{key:?}"), "SealingKey(WARDGATE_X)");
        assert_eq!(key.origin(), "WARDGATE_X");
    }

    /// Old key files and rows open: the format is base64 text of the key,
    /// and the byte layout is untouched (vector from Python `cryptography`).
    #[test]
    fn opens_values_sealed_in_the_existing_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.key");
        keyfile::write_private_new(&path, b"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n")
            .unwrap();
        let key = SealingKey::load_or_create_file(&path).unwrap();
        let nonce = hex::decode("0a0b0c0d0e0f101112131415").unwrap();
        let sealed = hex::decode("3f5cb1b60ff739c7f7b47c670c12ae26487cb27e908581c3f8").unwrap();
        let mut aad = b"wardgate-outbox-v1".to_vec();
        aad.extend_from_slice(&42i64.to_be_bytes());
        aad.extend_from_slice(b"pump-07");
        assert_eq!(key.open(&aad, &nonce, &sealed).unwrap(), b"{\"hr\":72}");
    }

    #[test]
    fn refuses_malformed_keys_by_origin() {
        let err = SealingKey::from_base64("AAAA", "WARDGATE_OUTBOX_KEY").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("32 needed") && text.contains("WARDGATE_OUTBOX_KEY"),
            "{text}"
        );
        let err = SealingKey::from_base64("not base64!", "k").unwrap_err();
        assert!(matches!(err, SealError::NotBase64 { .. }));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn environment_variable_wins_and_no_file_is_written() {
        let var = format!("WARDGATE_TLS_TEST_KEY_{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        std::env::set_var(&var, "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=");
        let key = SealingKey::load_or_create(&var, &path).unwrap();
        assert_eq!(key.origin(), var);
        assert!(!path.exists());
        std::env::set_var(&var, "short");
        assert!(SealingKey::load_or_create(&var, &path).is_err());
        assert!(!path.exists(), "a bad variable is not replaced by a file");
        std::env::remove_var(&var);
        SealingKey::load_or_create(&var, &path).unwrap();
        assert!(path.exists());
    }

    #[cfg(unix)]
    #[test]
    fn key_file_created_private_and_refused_when_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("totp.key");
        let a = SealingKey::load_or_create_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = SealingKey::load_or_create_file(&path).unwrap();
        let blob = a.seal_blob(b"x", b"y").unwrap();
        assert_eq!(b.open_blob(b"x", &blob).unwrap(), b"y");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SealingKey::load_or_create_file(&path).unwrap_err();
        assert!(matches!(
            err,
            SealError::KeyFile(KeyFileError::TooOpen { .. })
        ));
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            SealingKey::load_or_create_file(&path),
            Err(SealError::NotBase64 { .. })
        ));
    }

    #[test]
    fn threads_creating_at_once_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.key");
        let barrier = std::sync::Barrier::new(8);
        let keys: Vec<SealingKey> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier) = (&path, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        SealingKey::load_or_create_file(path).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let blob = keys[0].seal_blob(b"aad", b"one key").unwrap();
        for key in &keys {
            assert_eq!(key.open_blob(b"aad", &blob).unwrap(), b"one key");
        }
    }

    /// Run by [`processes_creating_at_once_share_one_key`] in child
    /// processes: load or create the key and print a sealed value.
    #[test]
    #[ignore = "a helper the process test runs in child processes"]
    fn child_process_seals() {
        let Some(path) = std::env::var_os(CHILD_PATH_ENV) else {
            return;
        };
        let key = SealingKey::load_or_create_file(Path::new(&path)).unwrap();
        let blob = key.seal_blob(b"child", b"from a child").unwrap();
        println!("SEALED={}", hex::encode(blob));
    }

    #[test]
    fn processes_creating_at_once_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.key");
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "sealed::tests::child_process_seals",
                        "--exact",
                        "--ignored",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_PATH_ENV, &path)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mine = SealingKey::load_or_create_file(&path).unwrap();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            let stdout = String::from_utf8(out.stdout).unwrap();
            let blob = stdout
                .lines()
                .find_map(|l| l.split_once("SEALED=").map(|(_, v)| v.trim()))
                .unwrap_or_else(|| panic!("child printed no value: {stdout}"));
            let blob = hex::decode(blob).unwrap();
            assert_eq!(mine.open_blob(b"child", &blob).unwrap(), b"from a child");
        }
    }
}
