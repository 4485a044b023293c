//! The one way tests make certificates: a throwaway PKI built with rcgen
//! (ECDSA P-256), shaped like the ward PKI that `gateway pki` issues.
//!
//! - [`Ca::generate`]: a CA (path length 0, key usage `keyCertSign`).
//! - [`Ca::issue_device`]: a device certificate; the identity is the SAN
//!   URI `urn:wardgate:device:<id>`, repeated as the CN, with client-auth
//!   usage, which is what the edge reads back. [`Ca::issue_device_between`]
//!   makes one with chosen dates (an expired one, for refusal tests).
//! - [`Ca::issue_gateway`]: a gateway's client certificate for the OTA
//!   server, SAN URI `urn:wardgate:gateway:<id>` and CN.
//! - [`Ca::issue_cn_only`]: a client certificate whose only identity is its
//!   CN (what Mosquitto's `use_identity_as_username` reads, and what legacy
//!   devices carry).
//! - [`Ca::issue_server`]: a server certificate for DNS names and IP
//!   addresses (tests use `127.0.0.1` and `localhost`).
//! - Another CA's certificates, for "unknown issuer" refusals, come from a
//!   second [`Ca::generate`].
//!
//! [`PkiDir`] writes a CA and a loopback server certificate into a
//! directory for servers configured by file. Private keys are always
//! written with mode 0600 and never over an existing file.
//!
//! The product's own `gateway pki` commands are tested through the binary;
//! this module is independent of them, so a fault there cannot hide in the
//! fixtures.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use wardgate_protocol::DeviceId;
use wardgate_tls::{DEVICE_URN_PREFIX, GATEWAY_URN_PREFIX};

use crate::error::OnPath as _;
use crate::{HarnessError, Result};

/// What the harness issued: the certificate (PEM and DER) and its
/// private key (PEM, PKCS#8). Not `Debug`, so a test cannot print the key.
#[derive(Clone)]
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
    /// Certificate, DER.
    pub cert_der: Vec<u8>,
}

impl Issued {
    /// The certificate's SHA-256 fingerprint, as a registry pin holds it.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        wardgate_tls::fingerprint(&self.cert_der)
    }

    /// Write the certificate (0644) and the key (0600) as new files.
    ///
    /// # Errors
    /// [`HarnessError::KeyFile`], also if either file exists.
    pub fn write(&self, cert: &Path, key: &Path) -> Result<()> {
        write_new(cert, &self.cert_pem, 0o644)?;
        write_new(key, &self.key_pem, 0o600)
    }
}

/// A certificate and key written to files: how a client that is configured
/// by path (a device, an upstream client, a gateway) gets its identity.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    /// Certificate file (PEM).
    pub cert: PathBuf,
    /// Private key file (PEM, mode 0600).
    pub key: PathBuf,
}

/// Create `path` holding `text` with `mode` (`wardgate-tls`' writer: never
/// over an existing file).
fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    wardgate_tls::keyfile::write_new(path, text.as_bytes(), mode)
        .map_err(|source| HarnessError::KeyFile { source })
}

/// Set `params`' validity to `from`..`to`, at day precision.
fn set_validity(params: &mut CertificateParams, (from, to): (DateTime<Utc>, DateTime<Utc>)) {
    // chrono's month and day always fit in u8.
    let day = |t: DateTime<Utc>| {
        let month = u8::try_from(t.month()).unwrap_or(1);
        let day = u8::try_from(t.day()).unwrap_or(1);
        rcgen::date_time_ymd(t.year(), month, day)
    };
    params.not_before = day(from);
    params.not_after = day(to);
}

/// From yesterday (tolerates clock skew) until `days` from now.
fn valid_for(days: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let now = Utc::now();
    (now - Duration::days(1), now + Duration::days(days))
}

/// The subject name: the CN, and an organization if given.
fn subject(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        name.push(DnType::OrganizationName, org);
    }
    name
}

/// What distinguishes one kind of end-entity certificate from another.
struct Profile<'a> {
    what: &'a str,
    common_name: &'a str,
    organization: Option<&'static str>,
    /// DNS names and IP addresses (rcgen tells them apart).
    names: &'a [String],
    uri: Option<String>,
    usage: ExtendedKeyUsagePurpose,
    valid: (DateTime<Utc>, DateTime<Utc>),
}

/// A test certificate authority. Not `Debug`: it holds the CA key.
pub struct Ca {
    /// The CA certificate, PEM: what peers are told to trust.
    pub cert_pem: String,
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    /// A new CA named `common_name`, valid from yesterday for `days`.
    ///
    /// # Errors
    /// [`HarnessError::Certificate`].
    pub fn generate(common_name: &str, days: i64) -> Result<Self> {
        let failed = || HarnessError::cert(format!("CA {common_name}"));
        let key = KeyPair::generate().map_err(failed())?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed())?;
        params.distinguished_name = subject(common_name, Some("Wardgate test PKI"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, valid_for(days));
        let cert = params.self_signed(&key).map_err(failed())?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert,
            key,
        })
    }

    /// Write `ca.pem` (0644) and `ca.key` (0600) into `dir`.
    ///
    /// # Errors
    /// [`HarnessError::KeyFile`], also if either file exists.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        write_new(&cert, &self.cert_pem, 0o644)?;
        write_new(&key, &self.key.serialize_pem(), 0o600)?;
        Ok((cert, key))
    }

    fn issue(&self, p: Profile<'_>) -> Result<Issued> {
        let failed = || HarnessError::cert(p.what.to_owned());
        let key = KeyPair::generate().map_err(failed())?;
        let mut params = CertificateParams::new(p.names.to_vec()).map_err(failed())?;
        params.distinguished_name = subject(p.common_name, p.organization);
        if let Some(uri) = p.uri {
            let uri = uri.as_str().try_into().map_err(failed())?;
            params.subject_alt_names.push(SanType::URI(uri));
        }
        params.extended_key_usages = vec![p.usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params, p.valid);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(failed())?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        })
    }

    /// A TLS server certificate for `names` (DNS names or IP addresses;
    /// the first is also the CN), valid for `days`.
    ///
    /// # Errors
    /// [`HarnessError::Certificate`], e.g. for an invalid name.
    pub fn issue_server(&self, names: &[String], days: i64) -> Result<Issued> {
        self.issue(Profile {
            what: "server certificate",
            common_name: names.first().map_or("wardgate-test-server", String::as_str),
            organization: None,
            names,
            uri: None,
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            valid: valid_for(days),
        })
    }

    /// A device certificate for `id` valid from `not_before` to
    /// `not_after` (day precision): SAN URI `urn:wardgate:device:<id>`, CN
    /// `<id>`, client-auth usage.
    ///
    /// # Errors
    /// [`HarnessError::Certificate`].
    pub fn issue_device_between(
        &self,
        id: &DeviceId,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<Issued> {
        self.issue(Profile {
            what: "device certificate",
            common_name: id.as_str(),
            organization: Some("Wardgate ward devices"),
            names: &[],
            uri: Some(format!("{DEVICE_URN_PREFIX}{id}")),
            usage: ExtendedKeyUsagePurpose::ClientAuth,
            valid: (not_before, not_after),
        })
    }

    /// A device certificate for `id`, valid from yesterday for `days`.
    ///
    /// # Errors
    /// [`HarnessError::Certificate`].
    pub fn issue_device(&self, id: &DeviceId, days: i64) -> Result<Issued> {
        let (from, to) = valid_for(days);
        self.issue_device_between(id, from, to)
    }

    /// A gateway's client certificate for `id`: SAN URI
    /// `urn:wardgate:gateway:<id>`, CN `<id>`, client-auth usage.
    ///
    /// # Errors
    /// [`HarnessError::Certificate`].
    pub fn issue_gateway(&self, id: &str, days: i64) -> Result<Issued> {
        self.issue(Profile {
            what: "gateway client certificate",
            common_name: id,
            organization: None,
            names: &[],
            uri: Some(format!("{GATEWAY_URN_PREFIX}{id}")),
            usage: ExtendedKeyUsagePurpose::ClientAuth,
            valid: valid_for(days),
        })
    }

    /// A client certificate whose only identity is the CN `cn` (no SAN).
    ///
    /// # Errors
    /// [`HarnessError::Certificate`].
    pub fn issue_cn_only(&self, cn: &str, days: i64) -> Result<Issued> {
        self.issue(Profile {
            what: "CN-only client certificate",
            common_name: cn,
            organization: None,
            names: &[],
            uri: None,
            usage: ExtendedKeyUsagePurpose::ClientAuth,
            valid: valid_for(days),
        })
    }
}

/// How long the certificates of a [`PkiDir`] are valid, in days.
pub const DAYS: i64 = 30;

/// A CA and a server certificate for `localhost` / `127.0.0.1` written
/// into a directory: `ca.pem`, `ca.key`, `server.pem`, `server.key`.
pub struct PkiDir {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// The CA, to issue more.
    pub ca: Ca,
    /// The CA certificate file.
    pub ca_path: PathBuf,
    /// The server certificate file.
    pub server_cert: PathBuf,
    /// The server key file (0600).
    pub server_key: PathBuf,
}

impl PkiDir {
    /// Make the CA `ca_name` and its loopback server certificate in `dir`
    /// (created if missing).
    ///
    /// # Errors
    /// [`HarnessError::Io`] or [`HarnessError::Certificate`].
    pub fn generate(dir: &Path, ca_name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).on("create directory", dir)?;
        let ca = Ca::generate(ca_name, DAYS)?;
        let (ca_path, _) = ca.write(dir)?;
        let server = ca.issue_server(&["localhost".to_owned(), "127.0.0.1".to_owned()], DAYS)?;
        let (server_cert, server_key) = (dir.join("server.pem"), dir.join("server.key"));
        server.write(&server_cert, &server_key)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ca,
            ca_path,
            server_cert,
            server_key,
        })
    }

    /// Write `issued` as `<name>.pem` / `<name>.key` in the directory.
    ///
    /// # Errors
    /// [`HarnessError::Io`], also if either file exists.
    pub fn write_files(&self, name: &str, issued: &Issued) -> Result<ClientIdentity> {
        let files = ClientIdentity {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        };
        issued.write(&files.cert, &files.key)?;
        Ok(files)
    }

    /// Issue and write a CN-only client certificate for `name`.
    ///
    /// # Errors
    /// As [`Ca::issue_cn_only`] and [`PkiDir::write_files`].
    pub fn client(&self, name: &str) -> Result<ClientIdentity> {
        self.write_files(name, &self.ca.issue_cn_only(name, DAYS)?)
    }

    /// Issue and write a device certificate for `id`.
    ///
    /// # Errors
    /// As [`Ca::issue_device`] and [`PkiDir::write_files`].
    pub fn device(&self, id: &DeviceId) -> Result<ClientIdentity> {
        self.write_files(id.as_str(), &self.ca.issue_device(id, DAYS)?)
    }

    /// A CN-only client certificate from another CA (made for this call
    /// in `foreign/<name>/`), which a server trusting this one must refuse.
    ///
    /// # Errors
    /// As [`PkiDir::generate`] and [`PkiDir::client`].
    pub fn foreign_client(&self, name: &str) -> Result<ClientIdentity> {
        let dir = self.dir.join("foreign").join(name);
        Self::generate(&dir, "Foreign test CA")?.client(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::generate(dir.path(), "Unit CA").unwrap();
        let id = DeviceId::parse("pump-01").unwrap();
        let files = pki.device(&id).unwrap();
        assert!(pki.device(&id).is_err(), "second write refused");
        for key in [&files.key, &pki.server_key, &dir.path().join("ca.key")] {
            wardgate_tls::keyfile::check_private(key).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&pki.ca_path).unwrap(),
            pki.ca.cert_pem
        );
    }

    fn parsed(issued: &Issued) -> (String, Vec<String>, bool) {
        use x509_parser::prelude::*;
        let (_, cert) = X509Certificate::from_der(&issued.cert_der).unwrap();
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(|n| match n {
                        GeneralName::URI(u) => format!("URI:{u}"),
                        GeneralName::DNSName(d) => format!("DNS:{d}"),
                        GeneralName::IPAddress(ip) => format!("IP:{ip:?}"),
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        (cn, sans, cert.validity().is_valid())
    }

    #[test]
    fn identities_sit_where_the_gateway_and_ota_server_read_them() {
        let ca = Ca::generate("Unit CA", 5).unwrap();
        let id = DeviceId::parse("Pump-07").unwrap();
        let (cn, sans, valid) = parsed(&ca.issue_device(&id, 5).unwrap());
        assert_eq!(cn, "Pump-07");
        assert_eq!(sans, vec!["URI:urn:wardgate:device:Pump-07".to_owned()]);
        assert!(valid);

        let (cn, sans, _) = parsed(&ca.issue_gateway("ward-3a", 5).unwrap());
        assert_eq!(cn, "ward-3a");
        assert_eq!(sans, vec!["URI:urn:wardgate:gateway:ward-3a".to_owned()]);

        let (cn, sans, _) = parsed(&ca.issue_cn_only("legacy-01", 5).unwrap());
        assert_eq!(cn, "legacy-01");
        assert!(sans.is_empty());

        let names = ["127.0.0.1".to_owned(), "localhost".to_owned()];
        let (cn, sans, _) = parsed(&ca.issue_server(&names, 5).unwrap());
        assert_eq!(cn, "127.0.0.1");
        assert_eq!(
            sans,
            vec!["IP:[127, 0, 0, 1]".to_owned(), "DNS:localhost".to_owned()]
        );
    }

    #[test]
    fn an_expired_device_certificate_is_expired() {
        let ca = Ca::generate("Unit CA", 5).unwrap();
        let now = Utc::now();
        let id = DeviceId::parse("pump-12").unwrap();
        let old = ca
            .issue_device_between(&id, now - Duration::days(30), now - Duration::days(2))
            .unwrap();
        assert!(!parsed(&old).2);
    }
}
