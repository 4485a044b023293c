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

/// The body of `GET url` as text (a `/metrics` page, say).
///
/// # Errors
/// [`HarnessError::Http`] when the request or reading the body fails.
pub async fn get_text(http: &reqwest::Client, url: &str) -> Result<String> {
    send(http.get(url)).await?.text().await.map_err(http_error)
}

/// The JSON answer of `GET url` with the bearer `token` (an admin API
/// read).
///
/// # Errors
/// [`HarnessError::Http`] when the request fails or the answer is not JSON.
pub async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Result<serde_json::Value> {
    send(http.get(url).bearer_auth(token))
        .await?
        .json()
        .await
        .map_err(http_error)
}

async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
    request.send().await.map_err(http_error)
}

fn http_error(source: reqwest::Error) -> HarnessError {
    HarnessError::Http { source }
}
