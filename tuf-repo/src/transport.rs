//! A tough [`Transport`] over `reqwest` that trusts a private CA and can
//! present a client certificate.
//!
//! tough's own `HttpTransport` trusts only the platform store and offers no
//! client certificate. Wardgate's OTA server is behind the ward's private CA
//! and wants mutual TLS, so [`HttpsTransport`] takes a rustls configuration
//! built with `wardgate-tls` (ring provider, only the given CA as root,
//! optional client identity) and hands it to reqwest; a refused handshake is
//! reported in words that name the field at fault. `file://` URLs
//! are served by tough's [`FilesystemTransport`] so the same transport works
//! for local mirrors.

use std::time::Duration;

use futures::TryStreamExt;
use tough::{
    async_trait, FilesystemTransport, Transport, TransportError, TransportErrorKind,
    TransportStream,
};
use url::Url;
use wardgate_tls::describe;
use wardgate_tls::{ClientTls, Credentials, TrustAnchors};

use crate::error::{Error, Result};

/// HTTPS transport with a private CA and optional client certificate.
#[derive(Debug, Clone)]
pub struct HttpsTransport {
    client: reqwest::Client,
    fields: Fields,
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

/// The connection fields named in fetch errors, for a transport built from
/// [`HttpsTransportConfig`].
const DEFAULT_FIELDS: Fields = Fields {
    ca: "ca_pem",
    cert: Some("client_identity"),
};

/// Which configuration fields hold the CA and this client's certificate, so
/// that a refused connection blames the right one.
#[derive(Debug, Clone, Copy)]
struct Fields {
    ca: &'static str,
    cert: Option<&'static str>,
}

fn terr(source: wardgate_tls::TlsError) -> Error {
    Error::Transport {
        reason: source.to_string(),
        source: Some(Box::new(source)),
    }
}

impl HttpsTransport {
    /// Builds the transport. Fails if the CA or the identity does not parse.
    pub fn new(cfg: &HttpsTransportConfig) -> Result<Self> {
        let roots = TrustAnchors::from_pem(DEFAULT_FIELDS.ca, &cfg.ca_pem).map_err(terr)?;
        let mut tls = ClientTls::new(roots);
        if let Some((cert_pem, key_pem)) = &cfg.client_identity {
            let identity = Credentials::from_pem(
                "client certificate (client_identity)",
                cert_pem,
                "client key (client_identity)",
                key_pem,
            )
            .map_err(terr)?;
            tls = tls.identity(identity);
        }
        let tls = tls.build().map_err(terr)?;
        Self::build(tls, cfg.timeout, DEFAULT_FIELDS)
    }

    /// A transport over a client configuration built by the caller with
    /// `wardgate-tls` (e.g. the gateway's OTA agent from its own config
    /// fields); `ca_field` and `cert_field` name those fields when the
    /// server's certificate, or ours, is refused.
    pub fn with_client_config(
        tls: rustls::ClientConfig,
        timeout: Option<Duration>,
        ca_field: &'static str,
        cert_field: Option<&'static str>,
    ) -> Result<Self> {
        Self::build(
            tls,
            timeout,
            Fields {
                ca: ca_field,
                cert: cert_field,
            },
        )
    }

    fn build(tls: rustls::ClientConfig, timeout: Option<Duration>, fields: Fields) -> Result<Self> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout.unwrap_or(Duration::from_secs(60)))
            .build()
            .map_err(|e| Error::Transport {
                reason: format!("HTTP client: {e}"),
                source: None,
            })?;
        Ok(Self { client, fields })
    }

    /// The cause of a failed request, in words when TLS refused it.
    fn cause(&self, e: reqwest::Error) -> Box<dyn std::error::Error + Send + Sync> {
        let cx = describe::Context {
            side: describe::Side::Client,
            peer: "OTA server",
            trust_field: self.fields.ca,
            own_cert_field: self.fields.cert,
            reissue: "ask the OTA server's operator for a certificate issued by that CA",
        };
        match describe::find_tls_error(&e) {
            Some(tls) => Box::new(TlsRefusal {
                words: describe::tls_error(tls, &cx),
                source: e,
            }),
            None => Box::new(e),
        }
    }
}

/// A request TLS refused, described for an operator; keeps reqwest's error.
#[derive(Debug, thiserror::Error)]
#[error("{words}")]
struct TlsRefusal {
    words: String,
    #[source]
    source: reqwest::Error,
}

impl HttpsTransport {
    /// Wraps an already configured HTTP client (for example one without any
    /// TLS roots, for a plain-HTTP test repository).
    pub fn from_client(client: reqwest::Client) -> Self {
        Self {
            client,
            fields: DEFAULT_FIELDS,
        }
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
            TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), self.cause(e))
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
