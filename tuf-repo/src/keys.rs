//! Ed25519 signing keys: generation, storage, loading, TUF key ids.
//!
//! A private key lives in a JSON key file that only its owner can read
//! (mode 0600). The secret is either stored as is (for online keys that a
//! service loads unattended, protected by file permissions) or encrypted
//! under a passphrase: Argon2id derives a 256-bit key from the passphrase and
//! a random salt, ChaCha20-Poly1305 seals the 32-byte Ed25519 seed, and the
//! public key is bound in as associated data so a swapped public key fails to
//! decrypt. A wrong passphrase is [`Error::WrongPassphrase`].
//!
//! [`SigningKey`] implements tough's [`Sign`] and [`KeySource`], so it can be
//! handed to `tough::editor` directly; [`SigningKey::key_source`] boxes it
//! for the editor's `&[Box<dyn KeySource>]` arguments.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::rand::SecureRandom;
use ed25519_dalek::Signer;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tough::async_trait;
use tough::key_source::KeySource;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use tough::sign::Sign;
use wardgate_tls::{KeyFileError, SealingKey};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// Format tag written into every key file.
const KEY_FILE_FORMAT: &str = "wardgate-tuf-key/1";

/// A passphrase used to encrypt or decrypt a key file; wiped from memory on drop.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase. An empty passphrase is refused.
    pub fn new(passphrase: impl Into<String>) -> Result<Self> {
        let p = Zeroizing::new(passphrase.into());
        if p.is_empty() {
            return Err(Error::InvalidArgument {
                what: "passphrase",
                reason: "an empty passphrase protects nothing; give a real one or none".into(),
            });
        }
        Ok(Self(p))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Argon2id cost parameters stored with an encrypted key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// OWASP's recommended Argon2id minimum (19 MiB, 2 iterations, 1 lane).
    fn default() -> Self {
        Self {
            m_cost_kib: Params::DEFAULT_M_COST,
            t_cost: Params::DEFAULT_T_COST,
            p_cost: Params::DEFAULT_P_COST,
        }
    }
}

/// How the secret is kept in the file.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Protection {
    /// The seed in hex; the file's 0600 mode is the only protection.
    Plain { seed: String },
    /// The seed sealed with ChaCha20-Poly1305 under an Argon2id-derived key.
    Argon2idChacha20poly1305 {
        kdf: KdfParams,
        salt: String,
        nonce: String,
        ciphertext: String,
    },
}

/// On-disk form of a private key file.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    keytype: String,
    scheme: String,
    /// Ed25519 public key, hex.
    public: String,
    /// TUF key id, hex (informational; recomputed on load).
    keyid: String,
    protection: Protection,
}

/// An Ed25519 signing key with its TUF identity.
///
/// Cloning copies the secret; the copy is wiped on drop like the original.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    key_id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new key from the operating system's random source.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        Self::from_dalek(ed25519_dalek::SigningKey::generate(&mut rng))
    }

    /// Builds a key from a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    fn from_dalek(inner: ed25519_dalek::SigningKey) -> Self {
        let key_id = key_id(&public_tuf_key(&inner.verifying_key()));
        Self { inner, key_id }
    }

    /// The TUF key id (hex SHA-256 of the public key's canonical JSON), as
    /// root and delegations list it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.inner.verifying_key()
    }

    /// The public key in TUF form (`keytype`/`scheme` `ed25519`, hex `public`).
    pub fn public_key(&self) -> Key {
        public_tuf_key(&self.inner.verifying_key())
    }

    /// Signs a message (the canonical JSON of a role) with Ed25519.
    pub fn sign_bytes(&self, msg: &[u8]) -> [u8; 64] {
        self.inner.sign(msg).to_bytes()
    }

    /// This key boxed as a tough [`KeySource`], for `tough::editor` calls.
    pub fn key_source(&self) -> Box<dyn KeySource> {
        Box::new(self.clone())
    }

    /// Writes the key to `path` with mode 0600, encrypted if a passphrase is
    /// given. Refuses to overwrite an existing file.
    pub fn save(&self, path: &Path, passphrase: Option<&Passphrase>, kdf: KdfParams) -> Result<()> {
        let public = hex::encode(self.inner.verifying_key().as_bytes());
        let protection = match passphrase {
            None => Protection::Plain {
                seed: hex::encode(self.inner.as_bytes()),
            },
            Some(p) => {
                let mut salt = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut salt);
                let aead_key = derive_key(p, &salt, kdf, path)?;
                // ChaCha20-Poly1305 under the derived key, the public key as
                // associated data, a fresh random nonce.
                let (nonce, ciphertext) =
                    SealingKey::from_bytes(&aead_key, path.display().to_string())
                        .seal(public.as_bytes(), self.inner.as_bytes())
                        .map_err(|_| Error::KeyFile {
                            path: path.to_owned(),
                            reason: "encryption failed".into(),
                        })?;
                Protection::Argon2idChacha20poly1305 {
                    kdf,
                    salt: hex::encode(salt),
                    nonce: hex::encode(nonce),
                    ciphertext: hex::encode(ciphertext),
                }
            }
        };
        let file = KeyFile {
            format: KEY_FILE_FORMAT.into(),
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            public,
            keyid: self.key_id.clone(),
            protection,
        };
        let mut json =
            Zeroizing::new(
                serde_json::to_vec_pretty(&file).map_err(|e| Error::Serialize {
                    what: "key file".into(),
                    reason: e.to_string(),
                })?,
            );
        json.push(b'\n');
        if let Protection::Plain { mut seed } = file.protection {
            seed.zeroize();
        }
        write_private(path, &json)
    }

    /// Loads a key file written by [`SigningKey::save`]. An encrypted file
    /// needs its passphrase ([`Error::PassphraseRequired`] without one,
    /// [`Error::WrongPassphrase`] with a wrong one).
    pub fn load(path: &Path, passphrase: Option<&Passphrase>) -> Result<Self> {
        let bytes = Zeroizing::new(
            std::fs::read(path).map_err(|e| Error::io("reading key file", path, e))?,
        );
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: "key file".into(),
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: &str| Error::KeyFile {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if file.format != KEY_FILE_FORMAT {
            return Err(bad("unknown key file format (expected wardgate-tuf-key/1)"));
        }
        if file.keytype != "ed25519" || file.scheme != "ed25519" {
            return Err(bad("only ed25519 keys are supported"));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        match &file.protection {
            Protection::Plain { seed: hex_seed } => {
                let raw =
                    Zeroizing::new(hex::decode(hex_seed).map_err(|_| bad("seed is not hex"))?);
                if raw.len() != 32 {
                    return Err(bad("seed is not 32 bytes"));
                }
                seed.copy_from_slice(&raw);
            }
            Protection::Argon2idChacha20poly1305 {
                kdf,
                salt,
                nonce,
                ciphertext,
            } => {
                let p = passphrase.ok_or_else(|| Error::PassphraseRequired {
                    path: path.to_owned(),
                })?;
                let salt = hex::decode(salt).map_err(|_| bad("salt is not hex"))?;
                let nonce = hex::decode(nonce).map_err(|_| bad("nonce is not hex"))?;
                let ciphertext =
                    hex::decode(ciphertext).map_err(|_| bad("ciphertext is not hex"))?;
                if nonce.len() != 12 {
                    return Err(bad("nonce is not 12 bytes"));
                }
                let aead_key = derive_key(p, &salt, *kdf, path)?;
                let plain = Zeroizing::new(
                    SealingKey::from_bytes(&aead_key, path.display().to_string())
                        .open(file.public.as_bytes(), &nonce, &ciphertext)
                        .map_err(|_| Error::WrongPassphrase {
                            path: path.to_owned(),
                        })?,
                );
                if plain.len() != 32 {
                    return Err(bad("sealed seed is not 32 bytes"));
                }
                seed.copy_from_slice(&plain);
            }
        }
        let key = Self::from_seed(&seed);
        if hex::encode(key.verifying_key().as_bytes()) != file.public {
            return Err(bad("the secret does not match the public key in the file"));
        }
        Ok(key)
    }
}

/// Derives the AEAD key from a passphrase with Argon2id.
fn derive_key(
    passphrase: &Passphrase,
    salt: &[u8],
    kdf: KdfParams,
    path: &Path,
) -> Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32)).map_err(|e| {
        Error::KeyFile {
            path: path.to_owned(),
            reason: format!("bad Argon2 parameters: {e}"),
        }
    })?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut *out)
        .map_err(|e| Error::KeyFile {
            path: path.to_owned(),
            reason: format!("key derivation failed: {e}"),
        })?;
    Ok(out)
}

/// Creates `path` (which must not exist) readable and writable by its owner
/// only, and writes `bytes` to it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    match wardgate_tls::keyfile::write_private_new(path, bytes) {
        Ok(()) => Ok(()),
        Err(KeyFileError::Exists { .. }) => Err(Error::io(
            "creating key file (it must not exist yet)",
            path,
            std::io::ErrorKind::AlreadyExists.into(),
        )),
        Err(KeyFileError::Write { source, .. }) => Err(Error::io("writing key file", path, source)),
        Err(other) => Err(Error::io(
            "writing key file",
            path,
            std::io::Error::other(other),
        )),
    }
}

/// The TUF form of an Ed25519 public key.
pub fn public_tuf_key(key: &ed25519_dalek::VerifyingKey) -> Key {
    Key::Ed25519 {
        keyval: Ed25519Key {
            public: key.as_bytes().to_vec().into(),
            _extra: HashMap::new(),
        },
        scheme: Ed25519Scheme::Ed25519,
        _extra: HashMap::new(),
    }
}

/// The TUF key id of a public key: hex SHA-256 of its canonical JSON (the
/// same value tough's `Key::key_id` computes).
pub fn key_id(key: &Key) -> String {
    use sha2::Digest;
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
    // A `Key` is plain strings and maps of strings: serialising it into a
    // Vec cannot fail. Should it ever, the id of the empty document is not
    // any real key's id, so nothing would match it.
    let _ = key.serialize(&mut ser);
    hex::encode(sha2::Sha256::digest(&buf))
}

/// Decodes a hex key id into tough's form.
pub(crate) fn decoded_key_id(hex_id: &str) -> Result<Decoded<Hex>> {
    let raw = hex::decode(hex_id).map_err(|_| Error::InvalidArgument {
        what: "key id",
        reason: format!("{hex_id:?} is not hex"),
    })?;
    Ok(raw.into())
}

/// Writes a public key file (the TUF key JSON) next to a private key.
pub fn save_public_key(path: &Path, key: &Key) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(key).map_err(|e| Error::Serialize {
        what: "public key".into(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    std::fs::write(path, json).map_err(|e| Error::io("writing public key", path, e))
}

/// Loads a public key in TUF JSON form (as written by `keygen`). Only
/// Ed25519 keys are accepted.
pub fn load_public_key(path: &Path) -> Result<Key> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading public key", path, e))?;
    let key: Key = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: "TUF public key".into(),
        path: path.to_owned(),
        source,
    })?;
    match &key {
        Key::Ed25519 { keyval, .. } if keyval.public.len() == 32 => Ok(key),
        _ => Err(Error::KeyFile {
            path: path.to_owned(),
            reason: "not an Ed25519 TUF public key".into(),
        }),
    }
}

/// The usual public key path for a private key path: `<name>.pub.json`.
pub fn public_key_path(private: &Path) -> PathBuf {
    let stem = private
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".json").to_owned())
        .unwrap_or_default();
    private.with_file_name(format!("{stem}.pub.json"))
}

#[async_trait]
impl Sign for SigningKey {
    fn tuf_key(&self) -> Key {
        self.public_key()
    }

    async fn sign(
        &self,
        msg: &[u8],
        _rng: &(dyn SecureRandom + Sync),
    ) -> std::result::Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(self.sign_bytes(msg).to_vec())
    }
}

#[async_trait]
impl KeySource for SigningKey {
    async fn as_sign(
        &self,
    ) -> std::result::Result<Box<dyn Sign>, Box<dyn std::error::Error + Send + Sync + 'static>>
    {
        Ok(Box::new(self.clone()))
    }

    async fn write(
        &self,
        _value: &str,
        _key_id_hex: &str,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Err("wardgate signing keys are written with SigningKey::save, not through tough".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_matches_tough() {
        let k = SigningKey::generate();
        let tough_id = k.public_key().key_id().map(|d| hex::encode(&*d));
        assert_eq!(tough_id.ok().as_deref(), Some(k.key_id()));
    }

    #[test]
    fn plain_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let k = SigningKey::generate();
        k.save(&path, None, KdfParams::default()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = SigningKey::load(&path, None).unwrap();
        assert_eq!(back.key_id(), k.key_id());
        // Refuses to overwrite.
        assert!(k.save(&path, None, KdfParams::default()).is_err());
    }

    #[test]
    fn encrypted_round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let k = SigningKey::generate();
        let kdf = KdfParams {
            m_cost_kib: 1024,
            t_cost: 1,
            p_cost: 1,
        };
        let pass = Passphrase::new("correct horse").unwrap();
        k.save(&path, Some(&pass), kdf).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&hex::encode(k.inner.as_bytes())));
        let back = SigningKey::load(&path, Some(&pass)).unwrap();
        assert_eq!(back.key_id(), k.key_id());
        let wrong = Passphrase::new("battery staple").unwrap();
        assert!(matches!(
            SigningKey::load(&path, Some(&wrong)),
            Err(Error::WrongPassphrase { .. })
        ));
        assert!(matches!(
            SigningKey::load(&path, None),
            Err(Error::PassphraseRequired { .. })
        ));
    }

    #[test]
    fn truncated_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        SigningKey::generate()
            .save(&path, None, KdfParams::default())
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            SigningKey::load(&path, None),
            Err(Error::Json { .. })
        ));
    }
}
