//! TLS for the HTTPS listener: the server certificate, and optional client
//! certificates verified against the ward CA (gateways). Clients without a
//! certificate are admitted (TUF clients, manufacturers and admins with
//! tokens); the gateway API refuses them.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::error::Error;

fn tls_err(field: &'static str, path: &Path, reason: impl Into<String>) -> Error {
    Error::Tls {
        field,
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn read_certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = std::fs::read(path).map_err(|e| tls_err(field, path, e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(field, path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(field, path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Builds the rustls server configuration (ring provider, TLS 1.2 and 1.3,
/// ALPN h2 and http/1.1).
///
/// # Errors
/// [`Error::Tls`] naming the config field whose file is unusable.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs("tls.cert", &cfg.cert)?;
    let key_pem =
        std::fs::read(&cfg.key).map_err(|e| tls_err("tls.key", &cfg.key, e.to_string()))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| tls_err("tls.key", &cfg.key, e.to_string()))?
        .ok_or_else(|| tls_err("tls.key", &cfg.key, "no private key found"))?;
    let mut roots = RootCertStore::empty();
    for c in read_certs("tls.client_ca", &cfg.client_ca)? {
        roots
            .add(c)
            .map_err(|e| tls_err("tls.client_ca", &cfg.client_ca, e.to_string()))?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .allow_unauthenticated()
            .build()
            .map_err(|e| tls_err("tls.client_ca", &cfg.client_ca, e.to_string()))?;
    let mut sc = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("tls.cert", &cfg.cert, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err("tls.key", &cfg.key, format!("does not match tls.cert: {e}")))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}
