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
use support::*;
use tuf_repo::{Error, HttpsTransport, HttpsTransportConfig, RepoLocation};
use wardgate_tests::pki::{Ca, Issued};

/// The ward's private CA, the server's certificate and a gateway's client
/// certificate (CN only) from the harness.
struct Pki {
    ca_pem: String,
    server: Issued,
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    let ca = Ca::generate("test ward CA", 30).unwrap();
    let names = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let client = ca.issue_cn_only("gateway-ward-7", 30).unwrap();
    Pki {
        server: ca.issue_server(&names, 30).unwrap(),
        ca_pem: ca.cert_pem,
        client_cert_pem: client.cert_pem,
        client_key_pem: client.key_pem,
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
    let cfg = wardgate_tests::tls::server_config(
        &pki.server.cert_pem,
        &pki.server.key_pem,
        Some(&pki.ca_pem),
    )
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
        axum_server::tls_rustls::RustlsConfig::from_config(cfg),
    )
    .handle(handle.clone());
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    Server { addr, handle, hits }
}

#[tokio::test]
async fn tough_loads_over_mutual_tls_with_a_private_ca() {
    let f = Fixture::new().await;
    let img = f.ship_acme("2.1.0", "p", 2).await;
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
    let other_ca = Ca::generate("another CA", 30).unwrap();
    let wrong_ca = HttpsTransport::new(&HttpsTransportConfig {
        ca_pem: other_ca.cert_pem.into_bytes(),
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
    rt.block_on(f.ship_acme("2.1.0", "p", 2));
    let pki = pki();
    let _guard = rt.enter();
    let server = serve(f.repo.path().to_owned(), &pki);
    let d = f.dir.path();
    std::fs::write(d.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(d.join("client.pem"), &pki.client_cert_pem).unwrap();
    std::fs::write(d.join("client.key"), &pki.client_key_pem).unwrap();
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let verify = [
        "verify",
        "--url",
        &url,
        "--root",
        "repo/metadata/1.root.json",
        "--ca",
        "ca.pem",
    ];
    let with_client = [
        "--client-cert",
        "client.pem",
        "--client-key",
        "client.key",
        "--check-targets",
    ];
    let o = cli(d, &[&verify[..], &with_client[..]].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("acme-medical/pump-fw-2.1.0.bin"), "{out}");
    assert!(out.contains("timestamp"), "{out}");
    // Without a client certificate the server refuses the CLI.
    let o = cli(d, &verify, &[]);
    assert!(!o.status.success());
}
