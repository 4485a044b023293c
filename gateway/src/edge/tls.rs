//! Mutual TLS for the device listener and the device identity taken from the
//! verified client certificate.
//!
//! The configuration comes from `wardgate-tls`: client certificates are
//! required and verified against the ward device CA (`edge.ca_cert`) only
//! (no system roots); a connection without a certificate, with one from
//! another CA or an expired one fails the handshake, and the refusal is
//! recorded in the words of [`wardgate_tls::describe`] ([`HANDSHAKE`]). The
//! device id comes from the SAN URI `urn:wardgate:device:<id>`, else from
//! the subject CN ([`wardgate_tls::identity_from_cert`]), and is parsed into
//! a [`DeviceId`]; never from the MQTT client id or a payload.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use wardgate_protocol::DeviceId;
use wardgate_tls::describe::{Context, Side};
use wardgate_tls::{ClientAuth, Credentials, ServerTls, TrustAnchors, DEVICE_URN_PREFIX};

use crate::edge::EdgeError;

/// The `rustls` provider the gateway uses (ring).
pub use wardgate_tls::provider;

/// How the edge words a refused device handshake.
pub const HANDSHAKE: Context<'static> = Context {
    side: Side::Server,
    peer: "device",
    trust_field: "edge.ca_cert",
    own_cert_field: Some("edge.server_cert"),
    reissue: "issue the device a new one with `gateway pki device`",
};

/// Who is on the other end of a verified TLS session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The device id from the certificate.
    pub device_id: DeviceId,
    /// SHA-256 of the DER certificate, hex.
    pub fingerprint: String,
}

/// Why no device id could be read from a (verified) certificate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate does not parse or names no single identity.
    #[error("client certificate: {0}")]
    Certificate(#[from] wardgate_tls::IdentityError),
    /// The name it carries is not a valid device id.
    #[error(
        "client certificate names no valid device id (SAN URI urn:wardgate:device:<id> or CN): {0}"
    )]
    NoId(#[source] wardgate_protocol::ProtocolError),
}

/// Read the device identity from a client certificate.
///
/// # Errors
/// [`IdentityError`] if the certificate does not parse or names no id.
pub fn peer_identity(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    let found = wardgate_tls::identity_from_cert(der, DEVICE_URN_PREFIX)?;
    let device_id = DeviceId::parse(&found.name).map_err(IdentityError::NoId)?;
    Ok(PeerIdentity {
        device_id,
        fingerprint: found.fingerprint,
    })
}

/// Build the device listener's TLS configuration: TLS 1.2/1.3, client
/// certificates required and verified against `ca_path` only.
///
/// # Errors
/// [`EdgeError::Tls`] naming the field (`edge.ca_cert`, `edge.server_cert`,
/// `edge.server_key`) at fault.
pub fn server_config(
    ca_path: &Path,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, EdgeError> {
    let credentials =
        Credentials::load("edge.server_cert", cert_path, "edge.server_key", key_path)?;
    let devices = TrustAnchors::load("edge.ca_cert", ca_path)?;
    let config = ServerTls::new(credentials)
        .client_auth(ClientAuth::Required(devices))
        .build()?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;

    #[test]
    fn identity_from_san_then_cn() {
        let ca = Ca::generate("t", 5).unwrap();
        let id = DeviceId::parse("pump-07").unwrap();
        let dev = ca.issue_device(&id, 5).unwrap();
        let got = peer_identity(&dev.cert_der).unwrap();
        assert_eq!(got.device_id, id);
        assert_eq!(got.fingerprint, dev.fingerprint());
        let cn = ca.issue_cn_only("monitor-3", 5).unwrap();
        assert_eq!(
            peer_identity(&cn.cert_der).unwrap().device_id.as_str(),
            "monitor-3"
        );
        let bad = ca.issue_cn_only("bad/id", 5).unwrap();
        assert!(matches!(
            peer_identity(&bad.cert_der),
            Err(IdentityError::NoId(_))
        ));
        assert!(peer_identity(b"garbage").is_err());
    }

    /// A device certificate from another CA, refused by a real listener:
    /// the refusal the edge records is in words, naming `edge.ca_cert`.
    #[tokio::test]
    async fn refused_handshake_is_recorded_in_words() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("ward", 5).unwrap();
        let (ca_pem, _) = ca.write(dir.path()).unwrap();
        let server = ca.issue_server(&["localhost".into()], 5).unwrap();
        let (cert, key) = (dir.path().join("s.pem"), dir.path().join("s.key"));
        server.write(&cert, &key).unwrap();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(server_config(&ca_pem, &cert, &key).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            acceptor.accept(tcp).await.err()
        });

        let rogue = Ca::generate("rogue", 5).unwrap();
        let device = rogue
            .issue_device(&DeviceId::parse("pump-07").unwrap(), 5)
            .unwrap();
        let client = wardgate_tls::ClientTls::new(
            TrustAnchors::from_pem("ca", ca.cert_pem.as_bytes()).unwrap(),
        )
        .identity(
            Credentials::from_pem(
                "cert",
                device.cert_pem.as_bytes(),
                "key",
                device.key_pem.as_bytes(),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        if let Ok(mut tls) = connector.connect(name, tcp).await {
            let _ = tls.read(&mut [0u8; 1]).await;
        }
        let err = accepted
            .await
            .unwrap()
            .expect("the edge refuses the device");
        let words = wardgate_tls::describe::handshake_error(&err, &HANDSHAKE);
        assert!(
            words.starts_with(
                "the client certificate of the device was not issued by the CA in edge.ca_cert; issue the device a new one with `gateway pki device`"
            ),
            "{words}"
        );
    }

    #[test]
    fn tls_errors_name_the_edge_field() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("t", 5).unwrap();
        let (ca_pem, ca_key) = ca.write(dir.path()).unwrap();
        let server = ca.issue_server(&["localhost".into()], 5).unwrap();
        let (cert, key) = (dir.path().join("s.pem"), dir.path().join("s.key"));
        server.write(&cert, &key).unwrap();
        server_config(&ca_pem, &cert, &key).unwrap();
        // The CA's key where the server key belongs: named by field.
        let err = server_config(&ca_pem, &cert, &ca_key)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("edge.server_key") && err.contains("edge.server_cert"),
            "{err}"
        );
        let err = server_config(&key, &cert, &key).unwrap_err().to_string();
        assert!(err.contains("edge.ca_cert"), "{err}");
    }
}
