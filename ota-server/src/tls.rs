//! TLS for the HTTPS listener: the server certificate, and optional client
//! certificates verified against the ward CA (gateways). Clients without a
//! certificate are admitted (TUF clients, manufacturers and admins with
//! tokens); the gateway API refuses them. Built with `wardgate-tls`, which
//! names the `tls.*` field at fault when a file is unusable.

use std::sync::Arc;

use rustls::ServerConfig;
use wardgate_tls::describe::{Context, Side};
use wardgate_tls::{ClientAuth, Credentials, ServerTls, TrustAnchors, ALPN_HTTP};

use crate::config::TlsConfig;
use crate::error::Error;

/// How the server words a refused handshake (a gateway's certificate is
/// checked against `tls.client_ca`).
pub const HANDSHAKE: Context<'static> = Context {
    side: Side::Server,
    peer: "client",
    trust_field: "tls.client_ca",
    own_cert_field: Some("tls.cert"),
    reissue: "issue the gateway a certificate from the ward CA naming urn:wardgate:gateway:<id>",
};

/// Builds the rustls server configuration (ring provider, TLS 1.2 and 1.3,
/// ALPN h2 and http/1.1).
///
/// # Errors
/// [`Error::Tls`] naming the config field whose file is unusable.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, Error> {
    let credentials = Credentials::load("tls.cert", &cfg.cert, "tls.key", &cfg.key)?;
    let gateways = TrustAnchors::load("tls.client_ca", &cfg.client_ca)?;
    let config = ServerTls::new(credentials)
        .client_auth(ClientAuth::Optional(gateways))
        .alpn(ALPN_HTTP)
        .build()?;
    Ok(Arc::new(config))
}
