//! Mutual TLS for the device listener and the device identity taken from the
//! verified client certificate.
//!
//! Client certificates are checked by `rustls`' `WebPkiClientVerifier`
//! against the ward device CA only (no system roots); a connection without a
//! certificate, with one from another CA or an expired one fails the
//! handshake. The device id comes from the SAN URI
//! `urn:wardgate:device:<id>`, else from the subject CN, and is parsed into a
//! [`DeviceId`]; never from the MQTT client id or a payload.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use wardgate_protocol::DeviceId;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::edge::EdgeError;
use crate::pki::{fingerprint, DEVICE_URI_PREFIX};

/// Who is on the other end of a verified TLS session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The device id from the certificate.
    pub device_id: DeviceId,
    /// SHA-256 of the DER certificate, hex.
    pub fingerprint: String,
}

/// Why no device id could be read from a (verified) certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The DER did not parse.
    #[error("client certificate does not parse: {0}")]
    Parse(String),
    /// Neither SAN URI nor CN holds a valid device id.
    #[error(
        "client certificate names no valid device id (SAN URI urn:wardgate:device:<id> or CN): {0}"
    )]
    NoId(String),
}

/// Read the device identity from a client certificate.
///
/// # Errors
/// [`IdentityError`] if the certificate does not parse or names no id.
pub fn peer_identity(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
    let mut candidate: Option<String> = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(id) = uri.strip_prefix(DEVICE_URI_PREFIX) {
                    if candidate.is_some() {
                        return Err(IdentityError::NoId("more than one device URI".into()));
                    }
                    candidate = Some(id.to_owned());
                }
            }
        }
    }
    if candidate.is_none() {
        candidate = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
    }
    let raw = candidate.ok_or_else(|| IdentityError::NoId("no SAN URI and no CN".into()))?;
    let device_id = DeviceId::parse(&raw).map_err(|e| IdentityError::NoId(e.to_string()))?;
    Ok(PeerIdentity {
        device_id,
        fingerprint: fingerprint(der),
    })
}

fn tls_err(what: &str, path: &Path, detail: impl std::fmt::Display) -> EdgeError {
    EdgeError::Tls(format!("{what} {}: {detail}", path.display()))
}

/// Load PEM certificates from `path`.
///
/// # Errors
/// [`EdgeError::Tls`] if the file is unreadable or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, EdgeError> {
    let file = std::fs::File::open(path).map_err(|e| tls_err("cannot open", path, e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("cannot parse certificates in", path, e))?;
    if certs.is_empty() {
        return Err(tls_err(
            "no certificate in",
            path,
            "expected PEM CERTIFICATE blocks",
        ));
    }
    Ok(certs)
}

/// Load a PEM private key from `path`.
///
/// # Errors
/// [`EdgeError::Tls`] if the file is unreadable or holds no key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, EdgeError> {
    let file = std::fs::File::open(path).map_err(|e| tls_err("cannot open", path, e))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| tls_err("cannot parse key in", path, e))?
        .ok_or_else(|| {
            tls_err(
                "no private key in",
                path,
                "expected a PEM PRIVATE KEY block",
            )
        })
}

/// The `rustls` provider the gateway uses (ring).
#[must_use]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Build the device listener's TLS configuration: TLS 1.2/1.3, client
/// certificates required and verified against `ca_path` only.
///
/// # Errors
/// [`EdgeError::Tls`] naming the file at fault.
pub fn server_config(
    ca_path: &Path,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, EdgeError> {
    let mut roots = RootCertStore::empty();
    for ca in load_certs(ca_path)? {
        roots
            .add(ca)
            .map_err(|e| tls_err("invalid CA certificate in", ca_path, e))?;
    }
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_err("cannot build client verifier from", ca_path, e))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EdgeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert_path)?, load_key(key_path)?)
        .map_err(|e| {
            tls_err(
                "server certificate and key do not match or are invalid:",
                cert_path,
                e,
            )
        })?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;

    #[test]
    fn identity_from_san_then_cn() {
        let ca = Ca::generate("t", 5).unwrap();
        let id = DeviceId::parse("pump-07").unwrap();
        let dev = ca.issue_device(&id, 5).unwrap();
        let got = peer_identity(&dev.cert_der).unwrap();
        assert_eq!(got.device_id, id);
        assert_eq!(got.fingerprint, dev.fingerprint());
        let cn = ca.issue_cn_only("monitor-3", 5).unwrap();
        assert_eq!(
            peer_identity(&cn.cert_der).unwrap().device_id.as_str(),
            "monitor-3"
        );
        let bad = ca.issue_cn_only("bad/id", 5).unwrap();
        assert!(matches!(
            peer_identity(&bad.cert_der),
            Err(IdentityError::NoId(_))
        ));
        assert!(peer_identity(b"garbage").is_err());
    }
}
