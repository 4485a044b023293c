//! The ward PKI: a device CA, the gateway's server certificate and device
//! client certificates (`rcgen`, ECDSA P-256).
//!
//! Device certificates carry the SAN URI `urn:wardgate:device:<id>` (and
//! the id as CN) and the client-auth extended key usage; the edge reads the
//! id back with [`crate::edge::tls::peer_identity`]. Private keys are
//! written with mode 0600. `gateway pki ...` uses this module; tests make
//! their certificates with the `wardgate-tests` harness instead, so the two
//! check each other.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use wardgate_protocol::DeviceId;

/// URI prefix of the device identity SAN (one definition, in `wardgate-tls`).
pub use wardgate_tls::DEVICE_URN_PREFIX as DEVICE_URI_PREFIX;

/// What went wrong in the PKI helper.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Certificate generation or parsing failed.
    #[error("certificate operation failed ({what}): {source}")]
    Rcgen {
        /// What was being done.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// read / write.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Refusing to overwrite an existing file.
    #[error("{0} already exists; remove it first or choose another directory")]
    Exists(PathBuf),
}

fn rc(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { what, source }
}

/// A certificate and its private key, in PEM.
#[derive(Clone)]
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Certificate, DER.
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// SHA-256 of the DER certificate, lowercase hex (what the registry pins).
    #[must_use]
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// Write the certificate (0644) and the key (0600); refuses to overwrite.
    ///
    /// # Errors
    /// [`PkiError::Exists`] or [`PkiError::Io`].
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), PkiError> {
        write_new(cert_path, self.cert_pem.as_bytes(), 0o644)?;
        write_new(key_path, self.key_pem.as_bytes(), 0o600)
    }
}

/// SHA-256 of a DER certificate, lowercase hex (from `wardgate-tls`).
pub use wardgate_tls::fingerprint;

/// Create `path` with `mode`, atomically, never replacing a file
/// (`wardgate-tls`' key-file writer).
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    use wardgate_tls::KeyFileError;
    wardgate_tls::keyfile::write_new(path, data, mode).map_err(|e| match e {
        KeyFileError::Exists { path } => PkiError::Exists(path),
        KeyFileError::Write { path, source } => PkiError::Io {
            action: "write",
            path,
            source,
        },
        other => PkiError::Io {
            action: "write",
            path: path.to_path_buf(),
            source: std::io::Error::other(other),
        },
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Valid from yesterday (tolerates clock skew between boxes) for `days`.
fn set_validity_days(params: &mut CertificateParams, days: i64) {
    let now = Utc::now();
    set_validity(
        params,
        now - chrono::Duration::days(1),
        now + chrono::Duration::days(days),
    );
}

fn set_validity(params: &mut CertificateParams, from: DateTime<Utc>, to: DateTime<Utc>) {
    // chrono's month/day are always within u8.
    let d = |t: DateTime<Utc>| {
        rcgen::date_time_ymd(
            t.year(),
            u8::try_from(t.month()).unwrap_or(1),
            u8::try_from(t.day()).unwrap_or(1),
        )
    };
    params.not_before = d(from);
    params.not_after = d(to);
}

/// A certificate authority: the ward device CA.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate as distributed (PEM).
    pub cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// Generate a new CA valid for `days`.
    ///
    /// # Errors
    /// [`PkiError::Rcgen`] if generation fails.
    pub fn generate(common_name: &str, days: i64) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(rc("generate CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc("CA params"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Wardgate ward PKI");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity_days(&mut params, days);
        let cert = params.self_signed(&key).map_err(rc("self-sign CA"))?;
        let cert_pem = cert.pem();
        Ok(Self {
            cert,
            key,
            cert_pem,
        })
    }

    /// Load a CA from its PEM certificate and key files.
    ///
    /// # Errors
    /// [`PkiError::Io`] or [`PkiError::Rcgen`].
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, PkiError> {
        let cert_pem = read(cert_path)?;
        let key = KeyPair::from_pem(&read(key_path)?).map_err(rc("parse CA key"))?;
        let params =
            CertificateParams::from_ca_cert_pem(&cert_pem).map_err(rc("parse CA certificate"))?;
        // Re-signing yields an issuer with the same name and key; the file
        // on disk stays the distributed CA certificate.
        let cert = params.self_signed(&key).map_err(rc("load CA"))?;
        Ok(Self {
            cert,
            key,
            cert_pem,
        })
    }

    /// Write `ca.pem` (0644) and `ca.key` (0600) into `dir`.
    ///
    /// # Errors
    /// [`PkiError::Exists`] or [`PkiError::Io`].
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
        let cert = dir.join("ca.pem");
        let key = dir.join("ca.key");
        write_new(&cert, self.cert_pem.as_bytes(), 0o644)?;
        write_new(&key, self.key.serialize_pem().as_bytes(), 0o600)?;
        Ok((cert, key))
    }

    /// Issue the gateway's TLS server certificate for `names` (DNS names or
    /// IP addresses), valid for `days`.
    ///
    /// # Errors
    /// [`PkiError::Rcgen`] if a name is invalid or signing fails.
    pub fn issue_server(&self, names: &[String], days: i64) -> Result<Issued, PkiError> {
        let key = KeyPair::generate().map_err(rc("generate server key"))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(rc("server names"))?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().map_or("wardgate", String::as_str),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity_days(&mut params, days);
        self.sign(&key, params, "sign server certificate")
    }

    /// Sign `params` for `key` with this CA.
    fn sign(
        &self,
        key: &KeyPair,
        params: CertificateParams,
        what: &'static str,
    ) -> Result<Issued, PkiError> {
        let cert = params
            .signed_by(key, &self.cert, &self.key)
            .map_err(rc(what))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        })
    }

    /// Issue a device client certificate valid from `not_before` to
    /// `not_after` (day precision).
    ///
    /// # Errors
    /// [`PkiError::Rcgen`] if signing fails.
    pub fn issue_device_between(
        &self,
        id: &DeviceId,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate().map_err(rc("generate device key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(rc("device params"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id.as_str());
        dn.push(DnType::OrganizationName, "Wardgate ward devices");
        params.distinguished_name = dn;
        let uri = format!("{DEVICE_URI_PREFIX}{id}");
        params.subject_alt_names = vec![SanType::URI(
            uri.as_str().try_into().map_err(rc("device SAN URI"))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, not_before, not_after);
        self.sign(&key, params, "sign device certificate")
    }

    /// Issue a device client certificate valid for `days` from yesterday.
    ///
    /// # Errors
    /// [`PkiError::Rcgen`] if signing fails.
    pub fn issue_device(&self, id: &DeviceId, days: i64) -> Result<Issued, PkiError> {
        let now = Utc::now();
        self.issue_device_between(
            id,
            now - chrono::Duration::days(1),
            now + chrono::Duration::days(days),
        )
    }

    /// Issue a client certificate whose only identity is the CN `cn` (no
    /// SAN), as some legacy devices carry.
    ///
    /// # Errors
    /// [`PkiError::Rcgen`] if signing fails.
    pub fn issue_cn_only(&self, cn: &str, days: i64) -> Result<Issued, PkiError> {
        let key = KeyPair::generate().map_err(rc("generate device key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(rc("device params"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        set_validity_days(&mut params, days);
        self.sign(&key, params, "sign device certificate")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_and_reloads_ca_and_writes_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("Test ward CA", 30).unwrap();
        let (cp, kp) = ca.write(dir.path()).unwrap();
        assert!(matches!(ca.write(dir.path()), Err(PkiError::Exists(_))));
        let again = Ca::load(&cp, &kp).unwrap();
        let id = DeviceId::parse("pump-01").unwrap();
        let dev = again.issue_device(&id, 10).unwrap();
        dev.write(&dir.path().join("d.pem"), &dir.path().join("d.key"))
            .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("d.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&kp).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(dev.fingerprint().len(), 64);
    }
}
