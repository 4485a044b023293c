//! rustls configurations for the peers a test plays: a device, an upstream
//! client, a gateway, or a small HTTPS server, each trusting only the test
//! CA from [`crate::pki`] (never the system roots).
//!
//! [`raw_tls`] opens a TLS socket to a loopback server with an optional
//! client certificate and hands back the stream, for tests that then speak
//! raw bytes (an attacker, a half-sent request).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::pki::ClientIdentity;
use crate::{HarnessError, Result};

/// The crypto provider of every test peer (ring, as the product uses).
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in `pem` (`what` names them in errors).
///
/// # Errors
/// [`HarnessError::Pem`] if there is none or one does not parse.
pub fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let bad = || HarnessError::Pem {
        what,
        expected: "CERTIFICATE block",
    };
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad())?;
    if certs.is_empty() {
        return Err(bad());
    }
    Ok(certs)
}

/// The private key in `pem`.
///
/// # Errors
/// [`HarnessError::Pem`] if there is none.
pub fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .ok()
        .flatten()
        .ok_or(HarnessError::Pem {
            what,
            expected: "PRIVATE KEY block",
        })
}

fn roots(ca_pem: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem, "the trusted CA")? {
        roots.add(cert).map_err(|source| HarnessError::Tls {
            what: "trust the test CA",
            source,
        })?;
    }
    Ok(roots)
}

/// A client config trusting only `ca_pem`, presenting `identity`
/// (certificate PEM, key PEM) if given.
///
/// # Errors
/// [`HarnessError::Pem`] or [`HarnessError::Tls`].
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Arc<ClientConfig>> {
    let tls = |what| move |source| HarnessError::Tls { what, source };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls("choose protocol versions"))?
        .with_root_certificates(roots(ca_pem)?);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certs(cert, "the client certificate")?,
                private_key(key, "the client key")?,
            )
            .map_err(tls("use the client certificate"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(HarnessError::io("read", path))
}

/// [`client_config`] from files: the CA at `ca` and `identity`'s files.
///
/// # Errors
/// [`HarnessError::Io`], [`HarnessError::Pem`] or [`HarnessError::Tls`].
pub fn client_config_files(ca: &Path, identity: &ClientIdentity) -> Result<Arc<ClientConfig>> {
    let (cert, key) = (read(&identity.cert)?, read(&identity.key)?);
    client_config(&read(ca)?, Some((&cert, &key)))
}

/// A server config for `cert_pem` / `key_pem`; with `client_ca_pem`,
/// client certificates from that CA are required.
///
/// # Errors
/// [`HarnessError::Pem`] or [`HarnessError::Tls`].
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<ServerConfig>> {
    let tls = |what| move |source| HarnessError::Tls { what, source };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls("choose protocol versions"))?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|source| HarnessError::ClientVerifier { source })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(
            certs(cert_pem, "the server certificate")?,
            private_key(key_pem, "the server key")?,
        )
        .map_err(tls("use the server certificate"))?;
    Ok(Arc::new(config))
}

/// Connect to `127.0.0.1:port` over TLS as server name `localhost`,
/// trusting `ca_pem`, with an optional client (certificate PEM, key PEM).
/// The stream is flushed once, so with TLS 1.3 a refused client
/// certificate surfaces on the first read rather than silently.
///
/// # Errors
/// Any I/O or handshake error, as `std::io::Error` (a refusal is what
/// refusal tests look for).
pub async fn raw_tls(
    port: u16,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let config = client_config(ca_pem, client).map_err(std::io::Error::other)?;
    connect(("127.0.0.1", port), "localhost", config).await
}

/// Connect to `addr` over TLS with `config`, checking the server
/// certificate against `server_name`.
///
/// # Errors
/// Any I/O or handshake error.
pub async fn connect(
    addr: impl tokio::net::ToSocketAddrs,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    use tokio::io::AsyncWriteExt;
    let name = ServerName::try_from(server_name.to_owned()).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    tls.flush().await?;
    Ok(tls)
}
