//! Server TLS configurations.
//!
//! One builder for every Wardgate listener: the device edge (client
//! certificates required, verified against the ward device CA), the OTA
//! server (client certificates optional: gateways present one, TUF clients
//! and token holders do not, and the gateway API refuses them later) and the
//! admin API (no client certificates). TLS 1.2 and 1.3 with rustls' safe
//! defaults and the *ring* provider; trust anchors are only the CA given.

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::pem::{Credentials, TlsError, TrustAnchors};

/// Whether and how clients prove who they are.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Every client presents a certificate issued by one of these CAs; the
    /// handshake fails otherwise (mutual TLS).
    Required(TrustAnchors),
    /// A client may present a certificate, which is then verified against
    /// these CAs; clients without one are admitted and must be refused by
    /// the application where it needs an identity.
    Optional(TrustAnchors),
    /// No client certificates are asked for.
    None,
}

/// Builder of a server configuration.
#[derive(Debug, Clone)]
pub struct ServerTls {
    credentials: Credentials,
    client_auth: ClientAuth,
    alpn: Vec<Vec<u8>>,
}

impl ServerTls {
    /// A server presenting `credentials`, asking no client certificate and
    /// offering no ALPN protocol until told otherwise.
    #[must_use]
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            client_auth: ClientAuth::None,
            alpn: Vec::new(),
        }
    }

    /// How clients authenticate.
    #[must_use]
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// ALPN protocols, most preferred first (e.g. [`crate::ALPN_HTTP`]).
    #[must_use]
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// Build the configuration (wrap it in an `Arc` for an acceptor).
    ///
    /// # Errors
    /// [`TlsError::Verifier`] naming the client CA field if rustls cannot
    /// build a verifier from it; [`TlsError::Material`] if the credentials
    /// are refused (already checked when they were loaded).
    pub fn build(self) -> Result<ServerConfig, TlsError> {
        let provider = crate::provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Versions { source })?;
        let builder = match &self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Required(anchors) | ClientAuth::Optional(anchors) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(anchors.store(), provider);
                let verifier = if matches!(self.client_auth, ClientAuth::Optional(_)) {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|source| TlsError::Verifier {
                    field: anchors.field(),
                    source,
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let cert_field = self.credentials.cert_field();
        let (chain, key) = self.credentials.into_parts();
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Material {
                field: cert_field,
                path: None,
                problem: crate::pem::Problem::BadCertificate(e),
            })?;
        config.alpn_protocols = self.alpn;
        Ok(config)
    }
}
