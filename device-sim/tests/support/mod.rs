//! Test harness for the device's update client: a ward PKI (rcgen), a
//! release signed by the manufacturer with `tuf-repo` (as in production),
//! and a real HTTPS image server with mutual TLS and Range/ETag support on
//! 127.0.0.1:0 that records what it was asked and can cut a response short
//! at a chosen byte.

#![allow(dead_code, missing_docs, clippy::missing_panics_doc)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use device_sim::ota::{Factory, OtaConfig, UpdateReport};
use device_sim::{DeviceOptions, DeviceTls};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use sha2::{Digest, Sha256};
use tuf_repo::firmware::FirmwareMeta;
use tuf_repo::repo::delegate::{delegate, enrol};
use tuf_repo::repo::init::{init, InitConfig, InitSigners, RoleSpec};
use tuf_repo::repo::release::{release, ReleaseRequest};
use tuf_repo::{Expiries, ManufacturerName, RepoDir, SigningKey};
use wardgate_protocol::{DeviceId, OtaOffer, OtaOutcome};

pub const HW: &str = "acme-pump-p7";
pub const MANUFACTURER: &str = "acme-medical";

/// The ward's device CA, with the gateway's server certificate.
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    pub ca_pem: String,
    pub server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub server_key: rustls::pki_types::PrivateKeyDer<'static>,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl Pki {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "test ward device CA");
        let ca = p.self_signed(&ca_key).unwrap();
        let sk = KeyPair::generate().unwrap();
        let mut sp =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        sp.distinguished_name.push(DnType::CommonName, "gateway");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&sk, &ca, &ca_key).unwrap();
        Self {
            ca_pem: ca.pem(),
            server_chain: vec![server.der().clone()],
            server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(sk.serialize_der().into()),
            server_cert_pem: server.pem(),
            server_key_pem: sk.serialize_pem(),
            ca,
            ca_key,
        }
    }

    /// A device (or other client) certificate with common name `id`.
    pub fn device(&self, id: &str) -> DeviceTls {
        let k = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, id);
        p.subject_alt_names = vec![rcgen::SanType::URI(
            format!("urn:wardgate:device:{id}").try_into().unwrap(),
        )];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&k, &self.ca, &self.ca_key).unwrap();
        DeviceTls {
            ca_pem: self.ca_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: k.serialize_pem(),
        }
    }

    pub fn client_config(&self, id: &str) -> Arc<rustls::ClientConfig> {
        Arc::new(device_sim::client_config(&self.device(id)).unwrap())
    }
}

/// A manufacturer with a TUF repository that delegates `acme-medical/*`
/// to it, signing releases as `tuf-repo release` does.
pub struct Manufacturer {
    dir: PathBuf,
    repo: RepoDir,
    pub key: SigningKey,
    pub name: ManufacturerName,
    expiries: Expiries,
}

/// One signed release: the image and the offer a gateway makes of it.
#[derive(Clone)]
pub struct Release {
    pub image: Vec<u8>,
    pub target: String,
    pub version: String,
    pub targets_metadata: String,
}

fn spec(k: &SigningKey) -> RoleSpec {
    RoleSpec {
        keys: vec![k.public_key()],
        threshold: 1,
    }
}

impl Manufacturer {
    pub async fn new(dir: &Path) -> Self {
        let repo = RepoDir::new(dir.join("repo"));
        let (root, targets, snapshot, timestamp) = (
            SigningKey::generate(),
            SigningKey::generate(),
            SigningKey::generate(),
            SigningKey::generate(),
        );
        let key = SigningKey::generate();
        let expiries = Expiries::default();
        init(
            &repo,
            &InitConfig {
                root: spec(&root),
                targets: spec(&targets),
                snapshot: spec(&snapshot),
                timestamp: spec(&timestamp),
                expiries,
            },
            &InitSigners {
                root: vec![root.clone()],
                targets: vec![targets.clone()],
                snapshot: vec![snapshot.clone()],
                timestamp: vec![timestamp.clone()],
            },
        )
        .await
        .unwrap();
        let name = ManufacturerName::new(MANUFACTURER).unwrap();
        let enrolment = enrol(&name, std::slice::from_ref(&key), 1, expiries.delegated)
            .await
            .unwrap();
        delegate(
            &repo,
            &name,
            &[key.public_key()],
            1,
            std::slice::from_ref(&targets),
            expiries.targets,
            Some(&enrolment),
        )
        .await
        .unwrap();
        Self {
            dir: dir.to_path_buf(),
            repo,
            key,
            name,
            expiries,
        }
    }

    /// Sign `file` at `version` for `hardware` (min_version 1.0.0).
    pub async fn release(
        &self,
        file: &str,
        version: &str,
        hardware: &str,
        image: Vec<u8>,
    ) -> Release {
        let image_path = self.dir.join(format!("in-{file}"));
        std::fs::write(&image_path, &image).unwrap();
        let target = format!("{MANUFACTURER}/{file}");
        let bundle = release(
            &self.repo,
            &ReleaseRequest {
                manufacturer: self.name.clone(),
                target: target.clone(),
                image: image_path,
                firmware: FirmwareMeta::new(
                    vec![hardware.into()],
                    version.parse().unwrap(),
                    Some("1.0.0".parse().unwrap()),
                    Some("test release".into()),
                )
                .unwrap(),
                expiry: self.expiries.delegated,
            },
            std::slice::from_ref(&self.key),
            &self.dir.join(format!("bundle-{file}")),
        )
        .await
        .unwrap();
        Release {
            image,
            target,
            version: version.into(),
            targets_metadata: std::fs::read_to_string(&bundle.role_metadata).unwrap(),
        }
    }

    pub fn factory(&self, version: &str) -> Factory {
        Factory {
            hardware_id: HW.into(),
            manufacturer_key: self.key.verifying_key(),
            firmware_version: version.parse().unwrap(),
        }
    }
}

/// Deterministic image bytes of `len`.
pub fn image(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 31 + u64::from(salt)) % 251) as u8)
        .collect()
}

impl Release {
    /// The offer a gateway makes of this release, to download from `url`.
    pub fn offer(&self, campaign: &str, url: &str) -> OtaOffer {
        OtaOffer {
            schema: 1,
            seq: 1,
            ts: Utc::now(),
            campaign_id: campaign.into(),
            target_name: self.target.clone(),
            version: self.version.clone(),
            length: self.image.len() as u64,
            sha256: hex::encode(Sha256::digest(&self.image)),
            hardware_id: HW.into(),
            download_url: url.into(),
            targets_metadata: self.targets_metadata.clone(),
        }
    }
}

/// What the image server was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    images: HashMap<String, (Vec<u8>, Option<String>)>,
    log: Vec<Request>,
    /// One-shot: the next response ends the connection after this absolute
    /// byte of the image.
    cut_at: Option<u64>,
    /// Answer this many next requests with 503 and `Retry-After: 1`, as a
    /// server at its limit of concurrent downloads.
    busy: u32,
}

/// A real HTTPS image server with mutual TLS (clients need a certificate of
/// the ward CA), `Range: bytes=N-`, `If-Range` and `ETag`. Shut down on drop.
pub struct ImageServer {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    handle: axum_server::Handle,
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl ImageServer {
    pub fn start(pki: &Pki) -> Self {
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
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/ota/{*path}", get(serve_image))
            .with_state(inner.clone());
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
        Self {
            addr,
            inner,
            handle,
        }
    }

    /// Serve `bytes` at `/ota/<path>` with `etag` (`None`: no ETag header).
    pub fn put(&self, path: &str, bytes: Vec<u8>, etag: Option<&str>) -> String {
        self.inner
            .lock()
            .unwrap()
            .images
            .insert(path.into(), (bytes, etag.map(str::to_owned)));
        self.url(path)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}/ota/{path}", self.addr.port())
    }

    /// Answer the next `n` requests with 503 (busy), `Retry-After: 1`.
    pub fn busy_for_next(&self, n: u32) {
        self.inner.lock().unwrap().busy = n;
    }

    /// The next response ends the connection after byte `n` of the image.
    pub fn cut_next_response_at(&self, n: u64) {
        self.inner.lock().unwrap().cut_at = Some(n);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().unwrap().log.clone()
    }
}

async fn serve_image(
    State(inner): State<Arc<Mutex<Inner>>>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let text = |h| {
        headers
            .get(h)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let range = text(header::RANGE);
    let if_range = text(header::IF_RANGE);
    let mut g = inner.lock().unwrap();
    if g.busy > 0 {
        g.busy -= 1;
        g.log.push(Request {
            path,
            range,
            if_range,
            status: 503,
        });
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
        )
            .into_response();
    }
    let Some((bytes, etag)) = g.images.get(&path).cloned() else {
        g.log.push(Request {
            path,
            range,
            if_range,
            status: 404,
        });
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = bytes.len() as u64;
    // If-Range: the range applies only if the image is still the same one.
    let range_applies = if_range.is_none() || (etag.is_some() && if_range == etag);
    let start = match (&range, range_applies) {
        (Some(r), true) => match r.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')) {
            Some(n) => match n.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => return StatusCode::BAD_REQUEST.into_response(),
            },
            None => return StatusCode::BAD_REQUEST.into_response(),
        },
        _ => None,
    };
    if start.is_some_and(|s| s >= len) {
        g.log.push(Request {
            path,
            range,
            if_range,
            status: 416,
        });
        return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    }
    let status = if start.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    g.log.push(Request {
        path,
        range,
        if_range,
        status: status.as_u16(),
    });
    let cut = g.cut_at.take();
    drop(g);
    let from = start.unwrap_or(0);
    let upto = cut.map_or(len, |c| c.clamp(from, len));
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = bytes
        [usize::try_from(from).unwrap()..usize::try_from(upto).unwrap()]
        .chunks(16 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let body = futures::stream::iter(chunks);
    let body = if cut.is_some() {
        // Let the bytes reach the client, then drop the connection.
        let tail = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(std::io::Error::other("connection cut by the test"))
        });
        Body::from_stream(futures::StreamExt::chain(body, tail))
    } else {
        Body::from_stream(body)
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, len - from)
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(e) = &etag {
        resp = resp.header(header::ETAG, e);
    }
    if start.is_some() {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {from}-{}/{len}", len - 1),
        );
    }
    resp.body(body).unwrap()
}

/// Everything one device test needs: a state folder, a config for the
/// device and the release to offer.
pub struct Bench {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub server: ImageServer,
    pub maker: Manufacturer,
}

impl Bench {
    /// Sign `file` at `version` for the bench's hardware id and serve it;
    /// returns the release and the image's URL.
    pub async fn publish(&self, file: &str, version: &str, image: Vec<u8>) -> (Release, String) {
        let rel = self.maker.release(file, version, HW, image).await;
        let url = self.server.put(file, rel.image.clone(), None);
        (rel, url)
    }

    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let server = ImageServer::start(&pki);
        let maker = Manufacturer::new(&dir.path().join("maker")).await;
        Self {
            dir,
            pki,
            server,
            maker,
        }
    }

    /// A device config for `id` built for [`HW`] with the manufacturer's
    /// key, at `version`, with fast download retries.
    pub fn config(&self, id: &str, version: &str) -> OtaConfig {
        let mut cfg = OtaConfig::new(
            self.dir.path().join("devices").join(id),
            self.maker.factory(version),
            self.pki.client_config(id),
        );
        cfg.download.retry_delay = Duration::from_millis(20);
        cfg
    }

    /// Device options to reach a broker at `port` as `id`.
    pub fn device_options(&self, id: &str, port: u16) -> DeviceOptions {
        DeviceOptions {
            id: DeviceId::parse(id).unwrap(),
            client_id: None,
            host: "localhost".into(),
            port,
            tls: self.pki.device(id),
            keep_alive: Duration::from_secs(30),
        }
    }
}

/// The outcomes of `reports`, in order.
pub fn outcomes(reports: &[UpdateReport]) -> Vec<OtaOutcome> {
    reports.iter().map(|r| r.outcome).collect()
}

/// The detail of the last report.
pub fn last_detail(reports: &[UpdateReport]) -> String {
    reports
        .last()
        .and_then(|r| r.detail.clone())
        .unwrap_or_default()
}

/// Mosquitto (Debian's), the real MQTT broker standing in for the gateway's
/// broker: TLS with the ward CA, client certificates required. Killed on
/// drop.
pub struct Mosquitto {
    pub port: u16,
    dir: PathBuf,
    child: std::process::Child,
}

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

impl Mosquitto {
    pub fn start(pki: &Pki, dir: &Path) -> Self {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "{MOSQUITTO} is missing; run scripts/setup-test-deps"
        );
        std::fs::create_dir_all(dir).unwrap();
        let w = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ca = w("ca.pem", &pki.ca_pem);
        let cert = w("broker.pem", &pki.server_cert_pem);
        let key = w("broker.key", &pki.server_key_pem);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut conf = format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous false\nlog_dest file {}\n",
            ca.display(),
            cert.display(),
            key.display(),
            dir.join("mosquitto.log").display()
        );
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if root {
            conf.push_str("user root\n");
        }
        let conf_path = w("mosquitto.conf", &conf);
        let child = std::process::Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf_path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut m = Self {
            port,
            dir: dir.to_path_buf(),
            child,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = m.child.try_wait() {
                panic!("mosquitto exited with {status}; log:\n{}", m.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not listen; log:\n{}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
