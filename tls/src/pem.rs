//! PEM certificates, private keys and trust anchors, each loaded for one
//! configuration field.
//!
//! A hospital engineer meets these errors at start-up, so every
//! [`TlsError`] names the field (`uplink.cert_file`), the file, what is wrong
//! in words and what to do ("no PEM CERTIFICATE block; expected the
//! certificate issued by `gateway pki ...`"). A certificate and its key are
//! checked together when they are loaded ([`Credentials`]): a key of an
//! unsupported type is blamed on the key's field, an unparsable certificate
//! on the certificate's field, and a key that belongs to another certificate
//! on both.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material or a TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file (or PEM text) behind a configuration field is unusable.
    #[error("{}", material_message(field, path.as_deref(), problem))]
    Material {
        /// The configuration field, e.g. `uplink.cert_file`.
        field: &'static str,
        /// The file, when the material came from one.
        path: Option<PathBuf>,
        /// What is wrong with it.
        #[source]
        problem: Problem,
    },
    /// rustls refused to build a client-certificate verifier from the CA.
    #[error("{field}: cannot verify client certificates with these CA certificates: {source}; point {field} at the CA that issues the clients' certificates")]
    Verifier {
        /// The field holding the client CA.
        field: &'static str,
        /// rustls' reason.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// The crypto provider offers no TLS 1.2 / 1.3 suite (a build problem,
    /// not a configuration one).
    #[error("the TLS library supports neither TLS 1.2 nor 1.3 in this build: {source}; this is a build defect, report it")]
    Versions {
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
}

impl TlsError {
    /// The configuration field at fault, if the error is about one.
    #[must_use]
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Material { field, .. } | Self::Verifier { field, .. } => Some(field),
            Self::Versions { .. } => None,
        }
    }

    fn material(field: &'static str, path: Option<&Path>, problem: Problem) -> Self {
        Self::Material {
            field,
            path: path.map(Path::to_path_buf),
            problem,
        }
    }
}

/// What is wrong with the material behind one field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The file cannot be read.
    #[error("cannot read the file ({0})")]
    Unreadable(#[source] std::io::Error),
    /// The PEM text is damaged.
    #[error("the PEM text is damaged ({0})")]
    Malformed(#[source] std::io::Error),
    /// No certificate in it.
    #[error("no PEM CERTIFICATE block")]
    NoCertificate,
    /// No private key in it.
    #[error("no PEM PRIVATE KEY block")]
    NoPrivateKey,
    /// A CA certificate that cannot be a trust anchor.
    #[error("a CA certificate in it cannot be used as a trust anchor ({0})")]
    BadTrustAnchor(#[source] rustls::Error),
    /// The (first) certificate does not parse as an X.509 v3 certificate.
    #[error("the certificate cannot be used ({})", crate::describe::certificate_words(.0))]
    BadCertificate(#[source] rustls::Error),
    /// The key is not of a type rustls can sign with.
    #[error("the private key cannot be used ({0})")]
    UnsupportedKey(#[source] rustls::Error),
    /// The key belongs to another certificate.
    #[error("this private key does not belong to the certificate in {cert_field}")]
    KeyMismatch {
        /// The field of the certificate it should match.
        cert_field: &'static str,
    },
}

impl Problem {
    /// What the operator should do, given the field.
    fn advice(&self, field: &str) -> String {
        match self {
            Self::Unreadable(_) => format!(
                "check that {field} names an existing file the service user may read"
            ),
            Self::Malformed(_) => format!(
                "{field} must hold PEM text (`-----BEGIN ...-----` blocks); re-export the file as PEM"
            ),
            Self::NoCertificate => format!(
                "expected the certificate issued by `gateway pki ...` (or your hospital CA) as `-----BEGIN CERTIFICATE-----` blocks; check that {field} points at a certificate, not a key"
            ),
            Self::NoPrivateKey => format!(
                "expected the private key written beside the certificate by `gateway pki ...` as a `-----BEGIN PRIVATE KEY-----` (or EC / RSA PRIVATE KEY) block; check that {field} points at the key, not the certificate"
            ),
            Self::BadTrustAnchor(_) => format!(
                "point {field} at the PEM certificate of the CA that issued the peer's certificates (ca.pem of `gateway pki init`)"
            ),
            Self::BadCertificate(_) => format!(
                "issue a new X.509 v3 certificate (e.g. with `gateway pki ...`) and point {field} at it"
            ),
            Self::UnsupportedKey(_) => format!(
                "{field} must hold an ECDSA (P-256 / P-384), Ed25519 or RSA private key in PEM"
            ),
            Self::KeyMismatch { cert_field } => format!(
                "point {cert_field} and {field} at a certificate and the key it was issued for"
            ),
        }
    }
}

fn material_message(field: &str, path: Option<&Path>, problem: &Problem) -> String {
    let at = path.map_or_else(String::new, |p| format!(" ({})", p.display()));
    format!("{field}{at}: {problem}; {}", problem.advice(field))
}

fn read_file(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::material(field, Some(path), Problem::Unreadable(e)))
}

fn certs_from(
    field: &'static str,
    path: Option<&Path>,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::material(field, path, Problem::Malformed(e)))?;
    if certs.is_empty() {
        return Err(TlsError::material(field, path, Problem::NoCertificate));
    }
    Ok(certs)
}

fn key_from(
    field: &'static str,
    path: Option<&Path>,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| TlsError::material(field, path, Problem::Malformed(e)))?
        .ok_or_else(|| TlsError::material(field, path, Problem::NoPrivateKey))
}

/// Load the PEM certificates (one or more) of `field` from `path`.
///
/// # Errors
/// [`TlsError::Material`] naming `field` if the file is unreadable, damaged
/// or holds no certificate.
pub fn load_certs(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_from(field, Some(path), &read_file(field, path)?)
}

/// Parse PEM certificates of `field` given as text.
///
/// # Errors
/// As [`load_certs`].
pub fn parse_certs(
    field: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_from(field, None, pem)
}

/// Load the PEM private key of `field` from `path` (PKCS#8, SEC1 or PKCS#1;
/// the first key in the file).
///
/// This reads the key only; check the file's permissions with
/// [`crate::keyfile::check_private`] where the configuration is validated.
///
/// # Errors
/// [`TlsError::Material`] naming `field` if the file is unreadable, damaged
/// or holds no private key.
pub fn load_private_key(
    field: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = zeroize::Zeroizing::new(read_file(field, path)?);
    key_from(field, Some(path), &pem)
}

/// Parse the PEM private key of `field` given as text.
///
/// # Errors
/// As [`load_private_key`].
pub fn parse_private_key(
    field: &'static str,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_from(field, None, pem)
}

/// This endpoint's own certificate chain and the private key it was issued
/// for, checked to belong together. Debug never shows the key.
pub struct Credentials {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_field: &'static str,
    key_field: &'static str,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("cert_field", &self.cert_field)
            .field("key_field", &self.key_field)
            .field(
                "fingerprint",
                &self.chain.first().map(|c| crate::fingerprint(c)),
            )
            .finish_non_exhaustive()
    }
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            cert_field: self.cert_field,
            key_field: self.key_field,
        }
    }
}

impl Credentials {
    /// Load the certificate chain of `cert_field` from `cert_path` and the key
    /// of `key_field` from `key_path`, and check that they belong together.
    ///
    /// # Errors
    /// [`TlsError::Material`] naming the field at fault (both, for a key of
    /// another certificate).
    pub fn load(
        cert_field: &'static str,
        cert_path: &Path,
        key_field: &'static str,
        key_path: &Path,
    ) -> Result<Self, TlsError> {
        let chain = load_certs(cert_field, cert_path)?;
        let key = load_private_key(key_field, key_path)?;
        Self::new(
            (cert_field, Some(cert_path), chain),
            (key_field, Some(key_path), key),
        )
    }

    /// As [`Credentials::load`] from PEM text.
    ///
    /// # Errors
    /// As [`Credentials::load`].
    pub fn from_pem(
        cert_field: &'static str,
        cert_pem: &[u8],
        key_field: &'static str,
        key_pem: &[u8],
    ) -> Result<Self, TlsError> {
        let chain = parse_certs(cert_field, cert_pem)?;
        let key = parse_private_key(key_field, key_pem)?;
        Self::new((cert_field, None, chain), (key_field, None, key))
    }

    fn new(
        (cert_field, cert_path, chain): (&'static str, Option<&Path>, Vec<CertificateDer<'static>>),
        (key_field, key_path, key): (&'static str, Option<&Path>, PrivateKeyDer<'static>),
    ) -> Result<Self, TlsError> {
        let provider = crate::provider();
        let signer = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| TlsError::material(key_field, key_path, Problem::UnsupportedKey(e)))?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signer);
        match certified.keys_match() {
            // A key type that cannot tell its public key is not a mismatch.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(TlsError::material(
                    key_field,
                    key_path,
                    Problem::KeyMismatch { cert_field },
                ))
            }
            Err(e) => {
                return Err(TlsError::material(
                    cert_field,
                    cert_path,
                    Problem::BadCertificate(e),
                ))
            }
        }
        Ok(Self {
            chain,
            key,
            cert_field,
            key_field,
        })
    }

    /// The chain, end-entity certificate first.
    #[must_use]
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The field the certificate came from.
    #[must_use]
    pub fn cert_field(&self) -> &'static str {
        self.cert_field
    }

    /// The field the key came from.
    #[must_use]
    pub fn key_field(&self) -> &'static str {
        self.key_field
    }

    pub(crate) fn into_parts(self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain, self.key)
    }
}

/// The CA certificates one endpoint trusts for its peers, from one field.
/// Only these: never the platform's trust store.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    store: Arc<RootCertStore>,
    field: &'static str,
}

impl TrustAnchors {
    /// Load the CA certificates of `field` from `path`.
    ///
    /// # Errors
    /// [`TlsError::Material`] naming `field` if the file is unusable, holds
    /// no certificate or one that cannot be a trust anchor.
    pub fn load(field: &'static str, path: &Path) -> Result<Self, TlsError> {
        Self::from_certs(field, Some(path), load_certs(field, path)?)
    }

    /// The CA certificates of `field` given as PEM text.
    ///
    /// # Errors
    /// As [`TrustAnchors::load`].
    pub fn from_pem(field: &'static str, pem: &[u8]) -> Result<Self, TlsError> {
        Self::from_certs(field, None, parse_certs(field, pem)?)
    }

    /// Trust exactly the roots in `store` (given roots, e.g. a public CA list
    /// an operator chose explicitly), reported as `field`.
    ///
    /// # Errors
    /// [`TlsError::Material`] with [`Problem::NoCertificate`] if `store` is
    /// empty.
    pub fn from_store(field: &'static str, store: RootCertStore) -> Result<Self, TlsError> {
        if store.is_empty() {
            return Err(TlsError::material(field, None, Problem::NoCertificate));
        }
        Ok(Self {
            store: Arc::new(store),
            field,
        })
    }

    fn from_certs(
        field: &'static str,
        path: Option<&Path>,
        certs: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TlsError> {
        let mut store = RootCertStore::empty();
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| TlsError::material(field, path, Problem::BadTrustAnchor(e)))?;
        }
        Self::from_store(field, store)
    }

    /// The field these anchors came from.
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// How many CA certificates are trusted.
    #[must_use]
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Never true for a constructed value (construction refuses empty).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    pub(crate) fn store(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> rcgen::CertifiedKey {
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn errors_name_the_field_the_file_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.pem");
        let err = load_certs("uplink.ca_file", &missing).unwrap_err();
        assert_eq!(err.field(), Some("uplink.ca_file"));
        let text = err.to_string();
        assert!(text.starts_with("uplink.ca_file ("), "{text}");
        assert!(
            text.contains("absent.pem") && text.contains("cannot read"),
            "{text}"
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "keeps the I/O cause"
        );

        // A key where a certificate belongs.
        let issued = self_signed();
        let key = write(dir.path(), "k.pem", &issued.key_pair.serialize_pem());
        let text = load_certs("uplink.cert_file", &key)
            .unwrap_err()
            .to_string();
        assert!(text.contains("uplink.cert_file"), "{text}");
        assert!(text.contains("no PEM CERTIFICATE block"), "{text}");
        assert!(text.contains("`gateway pki"), "{text}");

        // A certificate where a key belongs.
        let cert = write(dir.path(), "c.pem", &issued.cert.pem());
        let text = load_private_key("uplink.key_file", &cert)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("uplink.key_file") && text.contains("no PEM PRIVATE KEY block"),
            "{text}"
        );

        // Damaged PEM.
        let damaged = write(
            dir.path(),
            "d.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let text = load_certs("tls.cert", &damaged).unwrap_err().to_string();
        assert!(
            text.contains("tls.cert") && text.contains("damaged"),
            "{text}"
        );

        // Text, not a file: no path in the message.
        let text = parse_certs("ca_pem", b"").unwrap_err().to_string();
        assert!(
            text.starts_with("ca_pem: no PEM CERTIFICATE block"),
            "{text}"
        );
    }

    #[test]
    fn credentials_blame_the_right_field() {
        let dir = tempfile::tempdir().unwrap();
        let a = self_signed();
        let b = self_signed();
        let cert = write(dir.path(), "a.pem", &a.cert.pem());
        let key = write(dir.path(), "a.key", &a.key_pair.serialize_pem());
        let other_key = write(dir.path(), "b.key", &b.key_pair.serialize_pem());
        let ok = Credentials::load("uplink.cert_file", &cert, "uplink.key_file", &key).unwrap();
        assert_eq!(ok.chain().len(), 1);
        let shown = format!("{ok:?}");
        assert!(
            !shown.contains("PRIVATE") && !shown.contains("key:"),
            "{shown}"
        );

        // A key of another certificate: both fields named.
        let err = Credentials::load("uplink.cert_file", &cert, "uplink.key_file", &other_key)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                TlsError::Material {
                    field: "uplink.key_file",
                    problem: Problem::KeyMismatch {
                        cert_field: "uplink.cert_file"
                    },
                    ..
                }
            ),
            "{text}"
        );
        assert!(
            text.contains("does not belong to the certificate in uplink.cert_file"),
            "{text}"
        );

        // A certificate that is not v3 is the certificate's fault, not the key's.
        let v1 = include_str!("../tests/fixtures/v1-device.pem");
        let v1_key = include_str!("../tests/fixtures/v1-device.key");
        let err = Credentials::from_pem(
            "uplink.cert_file",
            v1.as_bytes(),
            "uplink.key_file",
            v1_key.as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("uplink.cert_file"));
        let text = err.to_string();
        assert!(text.contains("X.509 version 1"), "{text}");

        // A key that is not a key rustls can use.
        let err = Credentials::from_pem(
            "tls.cert",
            a.cert.pem().as_bytes(),
            "tls.key",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("tls.key"), "{err}");
    }

    #[test]
    fn trust_anchors_refuse_empty_and_unusable() {
        let a = self_signed();
        let anchors = TrustAnchors::from_pem("edge.ca_cert", a.cert.pem().as_bytes()).unwrap();
        assert_eq!((anchors.len(), anchors.field()), (1, "edge.ca_cert"));
        assert!(!anchors.is_empty());
        assert!(TrustAnchors::from_store("x", RootCertStore::empty()).is_err());
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = TrustAnchors::from_pem("edge.ca_cert", junk.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Material {
                    problem: Problem::BadTrustAnchor(_),
                    ..
                }
            ),
            "{err}"
        );
    }
}
