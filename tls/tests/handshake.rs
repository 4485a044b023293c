//! Real handshakes (in memory, rustls on both ends) with the configurations
//! this crate builds, and the words an operator reads when one is refused.
//!
//! The device certificates are issued with rcgen, except the X.509 v1 one,
//! which rcgen cannot write: see `tests/fixtures/README.md`.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection, SignatureScheme,
};
use wardgate_tls::describe::{self, Context, Side};
use wardgate_tls::{ClientAuth, ClientTls, Credentials, ServerTls, TrustAnchors, ALPN_HTTP};

/// The edge, recording a device's refused handshake.
const EDGE: Context<'static> = Context {
    side: Side::Server,
    peer: "device",
    trust_field: "edge.ca_cert",
    own_cert_field: Some("edge.server_cert"),
    reissue: "issue one with `gateway pki device`",
};

/// The uplink, connecting to the hospital broker.
const UPLINK: Context<'static> = Context {
    side: Side::Client,
    peer: "upstream broker",
    trust_field: "uplink.ca_file",
    own_cert_field: Some("uplink.cert_file"),
    reissue: "ask the broker's operator for a certificate from the CA in uplink.ca_file",
};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// (certificate DER, key) of a leaf `edit` shapes.
    fn issue(&self, edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        edit(&mut params);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn device(&self, edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        self.issue(|p| {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "pump-07");
            p.distinguished_name = dn;
            p.subject_alt_names = vec![SanType::URI(
                "urn:wardgate:device:pump-07".try_into().unwrap(),
            )];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            edit(p);
        })
    }

    fn server(&self) -> Leaf {
        self.issue(|p| {
            p.subject_alt_names = vec![SanType::DnsName("localhost".try_into().unwrap())];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        })
    }
}

struct Leaf {
    der: Vec<u8>,
    pem: String,
    key_pem: String,
}

/// Presents a chain as is, without the checks `with_client_auth_cert`
/// makes, so that a refused certificate reaches the server's verifier.
#[derive(Debug)]
struct Present(Arc<rustls::sign::CertifiedKey>);

impl ResolvesClientCert for Present {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn presenting(ca_pem: &str, cert_der: Vec<u8>, key_pem: &str) -> ClientConfig {
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let signer = wardgate_tls::provider()
        .key_provider
        .load_private_key(key)
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(vec![CertificateDer::from(cert_der)], signer);
    let roots = TrustAnchors::from_pem("test roots", ca_pem.as_bytes()).unwrap();
    let mut store = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        store.add(c.unwrap()).unwrap();
    }
    assert_eq!(roots.len(), store.len());
    ClientConfig::builder_with_provider(wardgate_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_client_cert_resolver(Arc::new(Present(Arc::new(certified))))
}

/// The edge's configuration: server certificate from `server_ca`, devices
/// verified against `client_ca_pem`.
fn edge(server_ca: &Ca, client_ca_pem: &str) -> ServerConfig {
    let leaf = server_ca.server();
    let creds = Credentials::from_pem(
        "edge.server_cert",
        leaf.pem.as_bytes(),
        "edge.server_key",
        leaf.key_pem.as_bytes(),
    )
    .unwrap();
    let anchors = TrustAnchors::from_pem("edge.ca_cert", client_ca_pem.as_bytes()).unwrap();
    ServerTls::new(creds)
        .client_auth(ClientAuth::Required(anchors))
        .build()
        .unwrap()
}

/// Both ends' errors, if any (server, client).
fn handshake(
    client: ClientConfig,
    server: ServerConfig,
    name: &str,
) -> (Option<rustls::Error>, Option<rustls::Error>) {
    let mut c = Connection::Client(
        ClientConnection::new(
            Arc::new(client),
            ServerName::try_from(name.to_owned()).unwrap(),
        )
        .unwrap(),
    );
    let mut s = Connection::Server(ServerConnection::new(Arc::new(server)).unwrap());
    let (mut server_err, mut client_err) = (None, None);
    for _ in 0..16 {
        pump(&mut c, &mut s, &mut server_err);
        pump(&mut s, &mut c, &mut client_err);
        let quiet = !c.wants_write() && !s.wants_write();
        let failed = server_err.is_some() || client_err.is_some();
        if quiet && (failed || (!c.is_handshaking() && !s.is_handshaking())) {
            break;
        }
    }
    (server_err, client_err)
}

/// Move what `from` wants to send into `to`, keeping `to`'s first error.
fn pump(from: &mut Connection, to: &mut Connection, err: &mut Option<rustls::Error>) {
    let mut buf = Vec::new();
    while from.wants_write() {
        if from.write_tls(&mut buf).is_err() {
            break;
        }
    }
    let mut data = &buf[..];
    while !data.is_empty() && err.is_none() {
        if to.read_tls(&mut data).is_err() {
            break;
        }
        if let Err(e) = to.process_new_packets() {
            *err = Some(e);
        }
    }
}

/// The edge's words for a device presenting `leaf` (issued by `issuer`),
/// the edge trusting `trusted`.
fn edge_refusal(trusted: &Ca, leaf: &Leaf) -> String {
    refused_by_edge(&trusted.pem(), |server_ca| {
        presenting(&server_ca.pem(), leaf.der.clone(), &leaf.key_pem)
    })
    .1
}

/// The edge (its certificate from a fresh server CA, trusting
/// `trusted_pem` for clients) refuses the client that `client` builds for
/// that server CA: the server's TLS error and its words.
fn refused_by_edge(
    trusted_pem: &str,
    client: impl FnOnce(&Ca) -> ClientConfig,
) -> (rustls::Error, String) {
    let server_ca = Ca::new("server CA");
    let (server_err, _) = handshake(
        client(&server_ca),
        edge(&server_ca, trusted_pem),
        "localhost",
    );
    let err = server_err.expect("the edge refuses the handshake");
    let words = describe::tls_error(&err, &EDGE);
    (err, words)
}

// control: confidentiality-in-transit
#[test]
fn accepted_device_and_alpn() {
    let ca = Ca::new("ward CA");
    let leaf = ca.device(|_| {});
    let client = presenting(&ca.pem(), leaf.der.clone(), &leaf.key_pem);
    assert_eq!(handshake(client, edge(&ca, &ca.pem()), "localhost").0, None);

    // The builders on both ends, with ALPN and a client identity.
    let server_leaf = ca.server();
    let server = ServerTls::new(
        Credentials::from_pem(
            "tls.cert",
            server_leaf.pem.as_bytes(),
            "tls.key",
            server_leaf.key_pem.as_bytes(),
        )
        .unwrap(),
    )
    .client_auth(ClientAuth::Optional(
        TrustAnchors::from_pem("tls.client_ca", ca.pem().as_bytes()).unwrap(),
    ))
    .alpn(ALPN_HTTP)
    .build()
    .unwrap();
    let client = ClientTls::new(TrustAnchors::from_pem("ca_pem", ca.pem().as_bytes()).unwrap())
        .identity(
            Credentials::from_pem("cert", leaf.pem.as_bytes(), "key", leaf.key_pem.as_bytes())
                .unwrap(),
        )
        .alpn(ALPN_HTTP)
        .build()
        .unwrap();
    assert_eq!(handshake(client, server.clone(), "localhost"), (None, None));
    // Optional: a client without a certificate is admitted.
    let anonymous = ClientTls::new(TrustAnchors::from_pem("ca_pem", ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    assert_eq!(handshake(anonymous, server, "localhost"), (None, None));
}

#[test]
fn version_1_certificate_in_words() {
    let fixture_ca = include_str!("fixtures/v1-ca.pem");
    let v1 = rustls_pemfile::certs(&mut include_str!("fixtures/v1-device.pem").as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let key = include_str!("fixtures/v1-device.key");
    let (err, words) = refused_by_edge(fixture_ca, |server_ca| {
        presenting(&server_ca.pem(), v1.to_vec(), key)
    });
    assert!(
        err.to_string().contains("UnsupportedCertVersion"),
        "the case of the issue: {err}"
    );
    assert!(
        words.starts_with(
            "the client certificate of the device is X.509 version 1; Wardgate needs version 3 certificates (issue one with `gateway pki device`)"
        ),
        "{words}"
    );
}

// control: confidentiality-in-transit
#[test]
fn unknown_issuer_expired_not_yet_valid_in_words() {
    let ca = Ca::new("ward CA");
    let rogue = Ca::new("rogue CA");
    let words = edge_refusal(&ca, &rogue.device(|_| {}));
    assert!(
        words.contains("was not issued by the CA in edge.ca_cert")
            && words.contains("`gateway pki device`")
            && words.contains("UnknownIssuer"),
        "{words}"
    );

    // A device certificate valid from `from` to `until` (year, month, day).
    let valid_between = |from: (i32, u8, u8), until: (i32, u8, u8)| {
        edge_refusal(
            &ca,
            &ca.device(|p| {
                p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
                p.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
            }),
        )
    };
    let words = valid_between((2000, 1, 1), (2001, 2, 3));
    assert!(
        words
            .starts_with("the client certificate of the device expired on 2001-02-03 00:00:00 UTC"),
        "{words}"
    );

    let words = valid_between((2090, 1, 1), (2100, 1, 1));
    assert!(
        words.contains("is not valid before 2090-01-01") && words.contains("clock"),
        "{words}"
    );
}

#[test]
fn wrong_usage_bad_signature_and_no_certificate_in_words() {
    let ca = Ca::new("ward CA");
    let words = edge_refusal(
        &ca,
        &ca.device(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]),
    );
    assert!(
        words.contains("is not issued for client authentication"),
        "{words}"
    );

    let mut forged = ca.device(|_| {});
    // The last byte is inside the ECDSA signature's `s`: the certificate
    // still parses, the signature no longer verifies.
    if let Some(last) = forged.der.last_mut() {
        *last ^= 0x01;
    }
    let words = edge_refusal(&ca, &forged);
    assert!(
        words.contains("signature on the client certificate of the device does not verify against the CA in edge.ca_cert"),
        "{words}"
    );

    let (_, words) = refused_by_edge(&ca.pem(), |server_ca| {
        ClientTls::new(TrustAnchors::from_pem("ca_pem", server_ca.pem().as_bytes()).unwrap())
            .build()
            .unwrap()
    });
    assert!(
        words.starts_with(
            "the device presented no client certificate; it needs one from the CA in edge.ca_cert"
        ),
        "{words}"
    );
}

#[test]
fn client_side_blames_the_trust_field_and_server_side_hears_the_alert() {
    let ward = Ca::new("ward CA");
    let other = Ca::new("another CA");
    let server = edge(&ward, &ward.pem());
    let leaf = ward.device(|_| {});
    let creds = Credentials::from_pem(
        "uplink.cert_file",
        leaf.pem.as_bytes(),
        "uplink.key_file",
        leaf.key_pem.as_bytes(),
    )
    .unwrap();

    // The broker's certificate is from a CA the uplink does not trust.
    let client =
        ClientTls::new(TrustAnchors::from_pem("uplink.ca_file", other.pem().as_bytes()).unwrap())
            .identity(creds.clone())
            .build()
            .unwrap();
    let (server_err, client_err) = handshake(client, server.clone(), "localhost");
    let words = describe::tls_error(&client_err.expect("refused"), &UPLINK);
    assert!(
        words.starts_with(
            "the certificate of the upstream broker was not issued by the CA in uplink.ca_file"
        ),
        "{words}"
    );
    assert!(!words.contains("uplink.key_file"), "{words}");
    // The server side hears an alert: its own certificate was refused.
    let words = describe::tls_error(&server_err.expect("alert"), &EDGE);
    assert!(
        words.contains("refused the certificate in edge.server_cert"),
        "{words}"
    );

    // The broker's certificate names another host.
    let client =
        ClientTls::new(TrustAnchors::from_pem("uplink.ca_file", ward.pem().as_bytes()).unwrap())
            .identity(creds)
            .build()
            .unwrap();
    let (_, client_err) = handshake(client, server, "broker.example");
    let words = describe::tls_error(&client_err.expect("refused"), &UPLINK);
    assert!(
        words.contains("is not valid for \"broker.example\""),
        "{words}"
    );
}

#[test]
fn finds_the_tls_error_inside_wrappers() {
    #[derive(Debug, thiserror::Error)]
    #[error("connection failed")]
    struct Outer(#[source] std::io::Error);

    let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
    let outer = Outer(io);
    assert!(describe::find_tls_error(&outer).is_some());
    let words = describe::error_chain(&outer, &UPLINK);
    assert!(words.contains("uplink.ca_file"), "{words}");

    // No TLS error inside: the chain's own words.
    let plain = Outer(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "refused",
    ));
    assert_eq!(
        describe::error_chain(&plain, &UPLINK),
        "connection failed: refused"
    );
    let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
    assert!(describe::handshake_error(&eof, &EDGE)
        .contains("closed the connection during the TLS handshake"));
}
