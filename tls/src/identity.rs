//! The name a verified certificate carries, and its fingerprint.
//!
//! Wardgate names a device or a gateway by its certificate, never by an MQTT
//! client id or a payload: the SAN URI with the role's prefix
//! ([`DEVICE_URN_PREFIX`], [`GATEWAY_URN_PREFIX`]), else the subject CN.
//! A certificate with two URIs of the prefix is refused rather than guessed
//! at. Callers parse the returned name into their own type (the gateway's
//! `DeviceId`, the OTA server's gateway id), so the syntax rules stay with
//! the type; this module only finds the name. Call it only on a certificate
//! the TLS layer has verified.

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// SAN URI prefix of a device certificate: `urn:wardgate:device:<id>`.
pub const DEVICE_URN_PREFIX: &str = "urn:wardgate:device:";
/// SAN URI prefix of a gateway certificate: `urn:wardgate:gateway:<id>`.
pub const GATEWAY_URN_PREFIX: &str = "urn:wardgate:gateway:";

/// Where the name was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// A SAN URI with the expected prefix (the prefix is removed).
    SanUri,
    /// The subject's common name (no SAN URI with the prefix).
    CommonName,
}

/// The name and fingerprint of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The name, still to be parsed by the caller into its id type.
    pub name: String,
    /// Where it came from.
    pub source: NameSource,
    /// SHA-256 of the DER certificate, lowercase hex (what registries pin).
    pub fingerprint: String,
}

/// Why no name could be read from a certificate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The DER does not parse as X.509.
    #[error("the certificate does not parse as X.509: {0}")]
    Parse(#[source] x509_parser::error::X509Error),
    /// The subjectAltName extension is damaged or repeated.
    #[error(
        "the certificate's subjectAltName extension is unusable: {0}; re-issue the certificate"
    )]
    San(#[source] x509_parser::error::X509Error),
    /// Two SAN URIs with the prefix: ambiguous.
    #[error("the certificate names two identities ({first} and {second}); re-issue it with exactly one {prefix}<id> SAN URI")]
    TwoUris {
        /// The prefix looked for.
        prefix: String,
        /// The first URI.
        first: String,
        /// The second URI.
        second: String,
    },
    /// Neither a SAN URI with the prefix nor a CN.
    #[error("the certificate names no identity: no {prefix}<id> SAN URI and no subject CN; re-issue it with one")]
    NoName {
        /// The prefix looked for.
        prefix: String,
    },
}

/// SHA-256 of a DER certificate, lowercase hex.
#[must_use]
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The name `der` carries for `urn_prefix`: the one SAN URI starting with
/// the prefix (without it), else the first subject CN.
///
/// # Errors
/// [`IdentityError`] if the certificate does not parse, its SAN is damaged,
/// it has two URIs with the prefix, or it names nothing.
pub fn identity_from_cert(der: &[u8], urn_prefix: &str) -> Result<CertIdentity, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
        IdentityError::Parse(match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => {
                x509_parser::error::X509Error::InvalidCertificate
            }
        })
    })?;
    let mut found: Option<&str> = None;
    let san = cert
        .subject_alternative_name()
        .map_err(IdentityError::San)?;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        if let GeneralName::URI(uri) = name {
            if let Some(rest) = uri.strip_prefix(urn_prefix) {
                if let Some(first) = found {
                    return Err(IdentityError::TwoUris {
                        prefix: urn_prefix.to_owned(),
                        first: format!("{urn_prefix}{first}"),
                        second: (*uri).to_owned(),
                    });
                }
                found = Some(rest);
            }
        }
    }
    let (name, source) = match found {
        Some(name) => (name.to_owned(), NameSource::SanUri),
        None => {
            let cn = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .ok_or_else(|| IdentityError::NoName {
                    prefix: urn_prefix.to_owned(),
                })?;
            (cn.to_owned(), NameSource::CommonName)
        }
    };
    Ok(CertIdentity {
        name,
        source,
        fingerprint: fingerprint(der),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn cert(cn: Option<&str>, uris: &[&str]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn san_uri_first_then_cn() {
        let der = cert(Some("cn-name"), &["urn:wardgate:device:pump-07"]);
        let id = identity_from_cert(&der, DEVICE_URN_PREFIX).unwrap();
        assert_eq!(
            (id.name.as_str(), id.source),
            ("pump-07", NameSource::SanUri)
        );
        assert_eq!(id.fingerprint, fingerprint(&der));
        assert_eq!(id.fingerprint.len(), 64);

        // A URI of another role does not count: the CN is used.
        let id = identity_from_cert(&der, GATEWAY_URN_PREFIX).unwrap();
        assert_eq!(
            (id.name.as_str(), id.source),
            ("cn-name", NameSource::CommonName)
        );

        let der = cert(Some("monitor-3"), &[]);
        let id = identity_from_cert(&der, DEVICE_URN_PREFIX).unwrap();
        assert_eq!(
            (id.name.as_str(), id.source),
            ("monitor-3", NameSource::CommonName)
        );
    }

    #[test]
    fn refuses_two_uris_no_name_and_garbage() {
        let der = cert(
            Some("x"),
            &["urn:wardgate:gateway:ward-a", "urn:wardgate:gateway:ward-b"],
        );
        let err = identity_from_cert(&der, GATEWAY_URN_PREFIX).unwrap_err();
        assert!(matches!(err, IdentityError::TwoUris { .. }), "{err}");
        assert!(err.to_string().contains("ward-a") && err.to_string().contains("ward-b"));

        let der = cert(None, &[]);
        let err = identity_from_cert(&der, DEVICE_URN_PREFIX).unwrap_err();
        assert!(matches!(err, IdentityError::NoName { .. }), "{err}");

        assert!(matches!(
            identity_from_cert(b"garbage", DEVICE_URN_PREFIX),
            Err(IdentityError::Parse(_))
        ));
    }
}
