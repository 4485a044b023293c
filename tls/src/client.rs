//! Client TLS configurations.
//!
//! One builder for every outbound Wardgate connection: the uplink to the
//! hospital broker, the gateway's OTA client, the device simulator. Servers
//! are verified against the given trust anchors only, never the platform's
//! trust store (the ward and the hospital run private CAs, and a public CA
//! must not be able to impersonate them). A client certificate is presented
//! when one is given.

use rustls::ClientConfig;

use crate::pem::{Credentials, TlsError, TrustAnchors};

/// Builder of a client configuration.
#[derive(Debug, Clone)]
pub struct ClientTls {
    roots: TrustAnchors,
    identity: Option<Credentials>,
    alpn: Vec<Vec<u8>>,
}

impl ClientTls {
    /// A client trusting servers issued by `roots` only, presenting no
    /// certificate and offering no ALPN protocol until told otherwise.
    #[must_use]
    pub fn new(roots: TrustAnchors) -> Self {
        Self {
            roots,
            identity: None,
            alpn: Vec::new(),
        }
    }

    /// Present `credentials` when the server asks for a client certificate.
    #[must_use]
    pub fn identity(mut self, credentials: Credentials) -> Self {
        self.identity = Some(credentials);
        self
    }

    /// ALPN protocols, most preferred first (e.g. [`crate::ALPN_HTTP`]).
    #[must_use]
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// Build the configuration. It is returned by value because `reqwest`
    /// takes it so; wrap it in an `Arc` for `rumqttc` or `tokio-rustls`.
    ///
    /// # Errors
    /// [`TlsError::Material`] if the credentials are refused (already
    /// checked when they were loaded).
    pub fn build(self) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Versions { source })?
            .with_root_certificates(self.roots.store());
        let mut config = match self.identity {
            None => builder.with_no_client_auth(),
            Some(credentials) => {
                let cert_field = credentials.cert_field();
                let (chain, key) = credentials.into_parts();
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Material {
                        field: cert_field,
                        path: None,
                        problem: crate::pem::Problem::BadCertificate(e),
                    })?
            }
        };
        config.alpn_protocols = self.alpn;
        Ok(config)
    }
}
