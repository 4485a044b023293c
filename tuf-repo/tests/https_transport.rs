//! `HttpsTransport`: tough loads a repository over HTTPS from a server that
//! trusts only the ward's private CA and demands a client certificate.
//! A client without a certificate, or trusting another CA, is refused; the
//! good client keeps working alongside.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use support::*;
use tuf_repo::{Error, HttpsTransport, HttpsTransportConfig, RepoLocation};

struct Pki {
    ca_pem: String,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
    client_cert_pem: String,
    client_key_pem: String,
}

fn ca() -> (rcgen::Certificate, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "test ward CA");
    let k = KeyPair::generate().unwrap();
    (p.self_signed(&k).unwrap(), k)
}

fn pki() -> Pki {
    let (ca, ca_key) = ca();
    let sk = KeyPair::generate().unwrap();
    let mut sp =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sp.signed_by(&sk, &ca, &ca_key).unwrap();
    let ck = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.distinguished_name
        .push(rcgen::DnType::CommonName, "gateway-ward-7");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = cp.signed_by(&ck, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_chain: vec![server.der().clone()],
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(sk.serialize_der().into()),
        client_cert_pem: client.pem(),
        client_key_pem: ck.serialize_pem(),
    }
}

#[derive(Clone)]
struct Served {
    root: PathBuf,
    hits: Arc<AtomicU64>,
}

async fn file(
    State(s): State<Served>,
    UrlPath(path): UrlPath<String>,
) -> Result<Vec<u8>, StatusCode> {
    if path.split('/').any(|seg| seg == ".." || seg.is_empty()) {
        return Err(StatusCode::BAD_REQUEST);
    }
    s.hits.fetch_add(1, Ordering::Relaxed);
    std::fs::read(s.root.join(&path)).map_err(|_| StatusCode::NOT_FOUND)
}

/// The HTTPS server; shut down when dropped.
struct Server {
    addr: SocketAddr,
    handle: axum_server::Handle,
    hits: Arc<AtomicU64>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn serve(root: PathBuf, pki: &Pki) -> Server {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/{*path}", get(file))
        .with_state(Served {
            root,
            hits: hits.clone(),
        });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(cfg)),
    )
    .handle(handle.clone());
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    Server { addr, handle, hits }
}

#[tokio::test]
async fn tough_loads_over_mutual_tls_with_a_private_ca() {
    let f = Fixture::new().await;
    let img = f
        .ship(&acme(), &f.acme, "pump-fw-2.1.0.bin", "2.1.0", "p", 2)
        .await;
    let pki = pki();
    let server = serve(f.repo.path().to_owned(), &pki);
    let url: url::Url = format!("https://127.0.0.1:{}/", server.addr.port())
        .parse()
        .unwrap();
    let loc = RepoLocation::Url(url);
    let good = HttpsTransport::new(&HttpsTransportConfig {
        ca_pem: pki.ca_pem.clone().into_bytes(),
        client_identity: Some((
            pki.client_cert_pem.clone().into_bytes(),
            pki.client_key_pem.clone().into_bytes(),
        )),
        timeout: None,
    })
    .unwrap();

    let report = tuf_repo::verify::verify(&loc, &f.trusted_root(), good.clone(), true)
        .await
        .unwrap();
    assert_eq!(report.roles.len(), 6);
    let got = tuf_repo::verify::fetch_target(
        &loc,
        &f.trusted_root(),
        good.clone(),
        "acme-medical/pump-fw-2.1.0.bin",
    )
    .await
    .unwrap();
    assert_eq!(got, std::fs::read(&img).unwrap());
    let hits_after_good = server.hits.load(Ordering::Relaxed);
    assert!(hits_after_good > 0);

    // No client certificate: the handshake is refused, nothing is served.
    let anonymous = HttpsTransport::new(&HttpsTransportConfig {
        ca_pem: pki.ca_pem.clone().into_bytes(),
        client_identity: None,
        timeout: None,
    })
    .unwrap();
    let e = tuf_repo::verify::verify(&loc, &f.trusted_root(), anonymous, false)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Verify { .. }), "{e}");
    assert!(e.to_string().contains("timestamp.json"), "{e}");
    assert_eq!(
        server.hits.load(Ordering::Relaxed),
        hits_after_good,
        "nothing served without a client certificate"
    );

    // Trusting another CA: our client refuses the server.
    let (other_ca, _) = ca();
    let wrong_ca = HttpsTransport::new(&HttpsTransportConfig {
        ca_pem: other_ca.pem().into_bytes(),
        client_identity: Some((
            pki.client_cert_pem.clone().into_bytes(),
            pki.client_key_pem.clone().into_bytes(),
        )),
        timeout: None,
    })
    .unwrap();
    let e = tuf_repo::verify::verify(&loc, &f.trusted_root(), wrong_ca, false)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Verify { .. }), "{e}");
    assert_eq!(server.hits.load(Ordering::Relaxed), hits_after_good);

    // The good client still works.
    tuf_repo::verify::verify(&loc, &f.trusted_root(), good, false)
        .await
        .unwrap();
    assert!(server.hits.load(Ordering::Relaxed) > hits_after_good);

    // Building a transport from a PEM without certificates is refused up front.
    let e = HttpsTransport::new(&HttpsTransportConfig::default()).unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");
}

#[test]
fn cli_verify_over_https() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = rt.block_on(Fixture::new());
    rt.block_on(f.ship(&acme(), &f.acme, "pump-fw-2.1.0.bin", "2.1.0", "p", 2));
    let pki = pki();
    let _guard = rt.enter();
    let server = serve(f.repo.path().to_owned(), &pki);
    let d = f.dir.path();
    std::fs::write(d.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(d.join("client.pem"), &pki.client_cert_pem).unwrap();
    std::fs::write(d.join("client.key"), &pki.client_key_pem).unwrap();
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let o = cli(
        d,
        &[
            "verify",
            "--url",
            &url,
            "--root",
            "repo/metadata/1.root.json",
            "--ca",
            "ca.pem",
            "--client-cert",
            "client.pem",
            "--client-key",
            "client.key",
            "--check-targets",
        ],
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("acme-medical/pump-fw-2.1.0.bin"), "{out}");
    assert!(out.contains("timestamp"), "{out}");
    let o = cli(
        d,
        &[
            "verify",
            "--url",
            &url,
            "--root",
            "repo/metadata/1.root.json",
            "--ca",
            "ca.pem",
        ],
        &[],
    );
    assert!(!o.status.success());
}
