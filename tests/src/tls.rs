//! TLS for the peers a test plays (a device, an upstream client, a
//! gateway, a small HTTPS server), built with `wardgate-tls` like every
//! Wardgate endpoint, each trusting only the test CA from [`crate::pki`].
//!
//! [`raw_tls`] opens a TLS socket to a loopback server with an optional
//! client certificate and hands back the stream, for tests that then speak
//! raw bytes (an attacker, a half-sent request).

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wardgate_tls::rustls::pki_types::ServerName;
use wardgate_tls::rustls::{ClientConfig, ServerConfig};
use wardgate_tls::{ClientAuth, ClientTls, Credentials, ServerTls, TrustAnchors};

use crate::pki::ClientIdentity;
use crate::{HarnessError, Result};

/// How the test material is named in `wardgate-tls`' errors.
const CA: &str = "the test CA";
const CERT: &str = "the test certificate";
const KEY: &str = "the test key";

fn tls(source: wardgate_tls::TlsError) -> HarnessError {
    HarnessError::Tls { source }
}

fn credentials((cert, key): (&str, &str)) -> Result<Credentials> {
    Credentials::from_pem(CERT, cert.as_bytes(), KEY, key.as_bytes()).map_err(tls)
}

/// A client config trusting only `ca_pem`, presenting `identity`
/// (certificate PEM, key PEM) if given.
///
/// # Errors
/// [`HarnessError::Tls`] for unusable PEM.
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Arc<ClientConfig>> {
    let mut client = ClientTls::new(TrustAnchors::from_pem(CA, ca_pem.as_bytes()).map_err(tls)?);
    if let Some(identity) = identity {
        client = client.identity(credentials(identity)?);
    }
    client.build().map(Arc::new).map_err(tls)
}

/// [`client_config`] from files: the CA at `ca` and `identity`'s files.
///
/// # Errors
/// [`HarnessError::Tls`] for an unreadable or unusable file.
pub fn client_config_files(ca: &Path, identity: &ClientIdentity) -> Result<Arc<ClientConfig>> {
    let roots = TrustAnchors::load(CA, ca).map_err(tls)?;
    let me = Credentials::load(CERT, &identity.cert, KEY, &identity.key).map_err(tls)?;
    ClientTls::new(roots)
        .identity(me)
        .build()
        .map(Arc::new)
        .map_err(tls)
}

/// A server config for `cert_pem` / `key_pem`; with `client_ca_pem`,
/// client certificates from that CA are required.
///
/// # Errors
/// [`HarnessError::Tls`] for unusable PEM.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<ServerConfig>> {
    let client_auth = match client_ca_pem {
        Some(ca) => ClientAuth::Required(TrustAnchors::from_pem(CA, ca.as_bytes()).map_err(tls)?),
        None => ClientAuth::None,
    };
    ServerTls::new(credentials((cert_pem, key_pem))?)
        .client_auth(client_auth)
        .build()
        .map(Arc::new)
        .map_err(tls)
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
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    stream.flush().await?;
    Ok(stream)
}
