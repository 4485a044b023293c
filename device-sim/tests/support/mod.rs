//! Test harness for the device's update client: a ward PKI and a real
//! Mosquitto (both from the shared harness, `wardgate_tests`), a release
//! signed by the manufacturer with `tuf-repo` (as in production), a real
//! HTTPS image server with mutual TLS and Range/ETag support on 127.0.0.1:0
//! that records what it was asked and can cut a response short at a chosen
//! byte, and the steps the tests take with a device: offer, lose power,
//! restart.

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
use device_sim::ota::{Factory, OfferResult, OtaClient, OtaConfig, OtaError, Slot, UpdateReport};
use device_sim::{DeviceOptions, DeviceTls};
use tuf_repo::firmware::FirmwareMeta;
use tuf_repo::repo::delegate::{delegate, enrol};
use tuf_repo::repo::init::{init, InitConfig, InitSigners, RoleSpec};
use tuf_repo::repo::release::{release, ReleaseRequest};
use tuf_repo::{Expiries, ManufacturerName, RepoDir, SigningKey};
use wardgate_protocol::{DeviceId, OtaOffer, OtaOutcome};
use wardgate_tests::hash::sha256_hex;
use wardgate_tests::mosquitto::Mosquitto;
use wardgate_tests::pki::{PkiDir, DAYS};

pub const HW: &str = "acme-pump-p7";
pub const MANUFACTURER: &str = "acme-medical";
/// The file of the release most tests offer (version 2.1.0).
pub const RELEASE_FILE: &str = "pump-fw-2.1.0.bin";

/// The ward's PKI, made by the shared harness ([`wardgate_tests::pki`]): the
/// device CA and the gateway's server certificate for `localhost` /
/// `127.0.0.1`, written into a folder because Mosquitto is configured by
/// file.
pub struct Pki {
    pub files: PkiDir,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        Self {
            files: PkiDir::generate(dir, "test ward device CA").unwrap(),
        }
    }

    /// A device (or other client) certificate for `id` (SAN URI
    /// `urn:wardgate:device:<id>` and CN `id`).
    pub fn device(&self, id: &str) -> DeviceTls {
        let id = DeviceId::parse(id).unwrap();
        let issued = self.files.ca.issue_device(&id, DAYS).unwrap();
        DeviceTls {
            ca_pem: self.files.ca.cert_pem.clone(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        }
    }

    pub fn client_config(&self, id: &str) -> Arc<rustls::ClientConfig> {
        Arc::new(device_sim::client_config(&self.device(id)).unwrap())
    }

    /// The gateway's TLS server side: its certificate, and client
    /// certificates of the ward CA required.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap();
        wardgate_tests::tls::server_config(
            &read(&self.files.server_cert),
            &read(&self.files.server_key),
            Some(&self.files.ca.cert_pem),
        )
        .unwrap()
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
            sha256: sha256_hex(&self.image),
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

impl Request {
    /// `(status, Range, If-Range)`: what the download tests check of a
    /// request.
    pub fn answer(&self) -> (u16, Option<&str>, Option<&str>) {
        (self.status, self.range.as_deref(), self.if_range.as_deref())
    }
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

impl Inner {
    /// Log `asked` as answered with `status`.
    fn answered(&mut self, mut asked: Request, status: StatusCode) {
        asked.status = status.as_u16();
        self.log.push(asked);
    }
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
            axum_server::tls_rustls::RustlsConfig::from_config(pki.server_config()),
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
    let asked = Request {
        path,
        range: text(header::RANGE),
        if_range: text(header::IF_RANGE),
        status: 0,
    };
    let mut g = inner.lock().unwrap();
    if g.busy > 0 {
        g.busy -= 1;
        g.answered(asked, StatusCode::SERVICE_UNAVAILABLE);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
        )
            .into_response();
    }
    let Some((bytes, etag)) = g.images.get(&asked.path).cloned() else {
        g.answered(asked, StatusCode::NOT_FOUND);
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = bytes.len() as u64;
    // If-Range: the range applies only if the image is still the same one.
    let range_applies = asked.if_range.is_none() || (etag.is_some() && asked.if_range == etag);
    let start = match (&asked.range, range_applies) {
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
        g.answered(asked, StatusCode::RANGE_NOT_SATISFIABLE);
        return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    }
    let status = if start.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    g.answered(asked, status);
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
    /// Sign `file` at `version` for the bench's hardware id and serve it
    /// without an ETag; returns the release and the image's URL.
    pub async fn publish(&self, file: &str, version: &str, image: Vec<u8>) -> (Release, String) {
        self.publish_with_etag(file, version, image, None).await
    }

    /// [`Bench::publish`], serving the image with `etag`.
    pub async fn publish_with_etag(
        &self,
        file: &str,
        version: &str,
        image: Vec<u8>,
        etag: Option<&str>,
    ) -> (Release, String) {
        let rel = self.maker.release(file, version, HW, image).await;
        let url = self.server.put(file, rel.image.clone(), etag);
        (rel, url)
    }

    /// A bench serving the release most tests offer, [`RELEASE_FILE`] at
    /// version 2.1.0, with `image` (and `etag`, if given).
    pub async fn with_release(image: Vec<u8>, etag: Option<&str>) -> (Self, Release, String) {
        let (b, rel) = Self::with_signed(image).await;
        let url = b.server.put(RELEASE_FILE, rel.image.clone(), etag);
        (b, rel, url)
    }

    /// A bench with that release signed but not served, for tests that
    /// serve something else in its place.
    pub async fn with_signed(image: Vec<u8>) -> (Self, Release) {
        let b = Self::new().await;
        let rel = b.maker.release(RELEASE_FILE, "2.1.0", HW, image).await;
        (b, rel)
    }

    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
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

    /// The update client of a device `id` on `version`, as
    /// [`Bench::config`] builds it.
    pub fn open_device(&self, id: &str, version: &str) -> OtaClient {
        OtaClient::open(&self.config(id, version)).unwrap()
    }

    /// A real Mosquitto with the bench's PKI, standing in for the
    /// gateway's broker (client certificates required).
    pub fn broker(&self) -> Mosquitto {
        Mosquitto::start_new(&self.pki.files, &self.dir.path().join("broker")).unwrap()
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

/// Offer `offer` to `dev`, check that the device answers `expected`, and
/// return what it reported on the way.
pub async fn offer_expecting(
    dev: &mut OtaClient,
    offer: &OtaOffer,
    expected: OfferResult,
) -> Vec<UpdateReport> {
    let mut reports = Vec::new();
    let r = dev.handle_offer(offer, &mut reports).await.unwrap();
    assert_eq!(r, expected, "{reports:?}");
    reports
}

/// Offer `offer` to `dev`, which must install it into `slot`; returns
/// what it reported.
pub async fn installs_into(dev: &mut OtaClient, offer: &OtaOffer, slot: Slot) -> Vec<UpdateReport> {
    offer_expecting(dev, offer, OfferResult::Installed { slot }).await
}

/// A device process on `cfg` that loses power during the download of
/// `offer` (`cfg.faults.power_loss_after` set): returns the power loss and
/// what was reported before it. The process is gone afterwards, as after
/// `kill -9`; only its state folder stays.
pub async fn lose_power_during(cfg: &OtaConfig, offer: &OtaOffer) -> (OtaError, Vec<UpdateReport>) {
    let mut dev = OtaClient::open(cfg).unwrap();
    let mut reports = Vec::new();
    let e = dev.handle_offer(offer, &mut reports).await.unwrap_err();
    (e, reports)
}

/// Power back: the power-loss switch off, and a new process opens the
/// same state folder.
pub fn power_back(cfg: &mut OtaConfig) -> OtaClient {
    cfg.faults.power_loss_after = None;
    OtaClient::open(cfg).unwrap()
}
