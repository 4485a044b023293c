//! HTTPS clients for the tests' admin and OTA API calls: `reqwest` over
//! rustls, trusting only the test CA (no system roots, no proxy from the
//! environment, so a developer's proxy settings cannot reroute loopback
//! traffic).

use crate::pki::Issued;
use crate::{HarnessError, Result};

/// A builder trusting only `ca_pem`, for a test to add to.
///
/// # Errors
/// [`HarnessError::Http`] if the PEM holds no certificate.
pub fn client_builder(ca_pem: &str) -> Result<reqwest::ClientBuilder> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
        .map_err(|source| HarnessError::Http { source })?;
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .no_proxy())
}

/// A client trusting only `ca_pem`, without a client certificate.
///
/// # Errors
/// [`HarnessError::Http`].
pub fn client(ca_pem: &str) -> Result<reqwest::Client> {
    client_builder(ca_pem)?
        .build()
        .map_err(|source| HarnessError::Http { source })
}

/// A client trusting only `ca_pem` that presents `identity`.
///
/// # Errors
/// [`HarnessError::Http`].
pub fn client_with_identity(ca_pem: &str, identity: &Issued) -> Result<reqwest::Client> {
    let pem = format!("{}{}", identity.cert_pem, identity.key_pem);
    let identity = reqwest::Identity::from_pem(pem.as_bytes())
        .map_err(|source| HarnessError::Http { source })?;
    client_builder(ca_pem)?
        .identity(identity)
        .build()
        .map_err(|source| HarnessError::Http { source })
}
