//! A tough [`Transport`] over `reqwest` that trusts a private CA and can
//! present a client certificate.
//!
//! tough's own `HttpTransport` trusts only the platform store and offers no
//! client certificate (DESIGN.md, "Known pitfalls"). Wardgate's OTA server is
//! behind the ward's private CA and wants mutual TLS, so [`HttpsTransport`]
//! builds its own rustls configuration (ring provider, only the given CA as
//! root, optional client identity) and hands it to reqwest. `file://` URLs
//! are served by tough's [`FilesystemTransport`] so the same transport works
//! for local mirrors.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tough::{
    async_trait, FilesystemTransport, Transport, TransportError, TransportErrorKind,
    TransportStream,
};
use url::Url;

use crate::error::{Error, Result};

/// HTTPS transport with a private CA and optional client certificate.
#[derive(Debug, Clone)]
pub struct HttpsTransport {
    client: reqwest::Client,
}

/// Settings for [`HttpsTransport`].
#[derive(Debug, Clone, Default)]
pub struct HttpsTransportConfig {
    /// PEM of the CA certificate(s) to trust (only these; no platform roots).
    pub ca_pem: Vec<u8>,
    /// PEM of the client certificate chain and its private key, if the
    /// server asks for one.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Per-request timeout (default 60 s).
    pub timeout: Option<Duration>,
}

fn terr(reason: impl Into<String>) -> Error {
    Error::Transport {
        reason: reason.into(),
    }
}

impl HttpsTransport {
    /// Builds the transport. Fails if the CA or the identity does not parse.
    pub fn new(cfg: &HttpsTransportConfig) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut cfg.ca_pem.as_slice()) {
            let cert = cert.map_err(|e| terr(format!("CA PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| terr(format!("CA certificate: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(terr(
                "no CA certificate in the CA PEM; give the ward's CA (ca.pem)",
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| terr(format!("TLS versions: {e}")))?
            .with_root_certificates(roots);
        let tls = match &cfg.client_identity {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| terr(format!("client certificate PEM: {e}")))?;
                if chain.is_empty() {
                    return Err(terr("no certificate in the client certificate PEM"));
                }
                let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
                    .map_err(|e| terr(format!("client key PEM: {e}")))?
                    .ok_or_else(|| terr("no private key in the client key PEM"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| terr(format!("client identity: {e}")))?
            }
        };
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(cfg.timeout.unwrap_or(Duration::from_secs(60)))
            .build()
            .map_err(|e| terr(format!("HTTP client: {e}")))?;
        Ok(Self { client })
    }

    /// Wraps an already configured HTTP client (for example one without any
    /// TLS roots, for a plain-HTTP test repository).
    pub fn from_client(client: reqwest::Client) -> Self {
        Self { client }
    }

    /// The underlying HTTP client (same CA and client identity), for requests
    /// tough's [`Transport`] cannot express, such as a resumed `Range`
    /// download of a target.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

#[async_trait]
impl Transport for HttpsTransport {
    async fn fetch(&self, url: Url) -> std::result::Result<TransportStream, TransportError> {
        match url.scheme() {
            "file" => return FilesystemTransport.fetch(url).await,
            "https" | "http" => {}
            _ => {
                return Err(TransportError::new(
                    TransportErrorKind::UnsupportedUrlScheme,
                    url,
                ))
            }
        }
        let resp = self.client.get(url.clone()).send().await.map_err(|e| {
            TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), e)
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::FORBIDDEN {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        }
        if !status.is_success() {
            return Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                url,
                format!("HTTP status {status}"),
            ));
        }
        let u = url.clone();
        let stream = resp.bytes_stream().map_err(move |e| {
            TransportError::new_with_cause(TransportErrorKind::Other, u.clone(), e)
        });
        Ok(Box::pin(stream))
    }
}
