//! Shared harness of the gateway's OTA tests, on the OTA server's own test
//! set-up (`server_setup`: a ward PKI, a TUF repository authored with
//! `tuf-repo` with `acme/*` and `globex/*` delegated, the server's config):
//! a real `ota-server` on 127.0.0.1:0 (in-process, mutual TLS), a gateway
//! client certificate, manufacturer releases uploaded through its API,
//! static HTTPS mirrors of its repository (honest or tampered, as a
//! compromised server or CDN would serve), a TCP proxy that cuts transfers,
//! and the gateway's `[ota]` settings for all of them.
#![allow(dead_code, clippy::missing_panics_doc, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gateway::ota::OtaConfig;
use serde_json::Value;
use tuf_repo::{RepoDir, SigningKey};

// The OTA server's own test fixture, shared rather than written again.
#[path = "../../../ota-server/tests/support/server_setup.rs"]
mod server_setup;
// Not every test binary that includes this module uses each of these.
#[allow(unused_imports)]
pub use server_setup::{author_repo, write, Opts, ServerSetup, HW};

/// The file of acme's release that most tests roll out, version 2.0.0.
pub const PUMP_FILE: &str = "pump-2.0.0.bin";

/// The ward CA's files for the OTA server and the gateway `ward-3a`, in
/// the server set-up's dir.
pub struct Pki {
    pub ca_pem: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub gateway_cert: PathBuf,
    pub gateway_key: PathBuf,
    ca_text: String,
}

impl Pki {
    /// The server's files from `setup`, and a gateway client certificate
    /// for `ward-3a` issued by its CA.
    pub fn new(setup: &ServerSetup) -> Self {
        let d = setup.dir.path();
        let (gateway_cert, gateway_key) = (d.join("gateway.pem"), d.join("gateway.key"));
        setup
            .ca
            .issue_gateway("ward-3a", 30)
            .unwrap()
            .write(&gateway_cert, &gateway_key)
            .unwrap();
        Self {
            ca_pem: setup.ca_pem.clone(),
            server_cert: setup.server_cert.clone(),
            server_key: setup.server_key.clone(),
            gateway_cert,
            gateway_key,
            ca_text: setup.ca.cert_pem.clone(),
        }
    }

    pub fn tls_config(&self) -> ota_server::config::TlsConfig {
        ota_server::config::TlsConfig {
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
            client_ca: self.ca_pem.clone(),
        }
    }

    /// A plain HTTPS client trusting the ward CA (no client certificate).
    pub fn client(&self) -> reqwest::Client {
        wardgate_tests::https::client(&self.ca_text).unwrap()
    }
}

/// A real `ota-server` with its PKI and repository, in a temp dir. Its
/// [`ServerSetup`] (keys, tokens, paths) reads through it.
pub struct OtaServer {
    setup: ServerSetup,
    pub pki: Pki,
    /// Version 1 of root.json (what gateways pin).
    pub root_json: PathBuf,
    server: Option<ota_server::server::RunningServer>,
}

impl std::ops::Deref for OtaServer {
    type Target = ServerSetup;

    fn deref(&self) -> &ServerSetup {
        &self.setup
    }
}

impl OtaServer {
    /// PKI, repository, config and `ota-server init`; not started.
    pub async fn new(timestamp_expiry: &'static str, timestamp_refresh: &'static str) -> Self {
        let setup = ServerSetup::new(&Opts {
            timestamp_expiry,
            timestamp_refresh,
            max_upload_bytes: 64 * 1024 * 1024,
        })
        .await;
        let pki = Pki::new(&setup);
        let root_json = write(
            setup.dir.path(),
            "pinned-root.json",
            std::fs::read(setup.root_v1()).unwrap(),
        );
        Self {
            setup,
            pki,
            root_json,
            server: None,
        }
    }

    /// [`OtaServer::new`] then [`OtaServer::start`].
    pub async fn started(timestamp_expiry: &'static str, timestamp_refresh: &'static str) -> Self {
        let mut server = Self::new(timestamp_expiry, timestamp_refresh).await;
        server.start().await;
        server
    }

    /// A started server (timestamp valid a day, re-signed every 6 hours) on
    /// which acme has published `img` as [`PUMP_FILE`] (what most tests
    /// roll out), with the target name and the role bytes it uploaded.
    pub async fn with_pump(img: &[u8]) -> (Self, String, Vec<u8>) {
        let server = Self::started("1day", "6h").await;
        let (target, role_bytes) = server.publish_pump(img).await;
        (server, target, role_bytes)
    }

    /// acme publishes `img` as [`PUMP_FILE`], version 2.0.0: see
    /// [`OtaServer::publish`].
    pub async fn publish_pump(&self, img: &[u8]) -> (String, Vec<u8>) {
        self.publish("acme", PUMP_FILE, "2.0.0", img).await
    }

    /// Starts the server in-process (mutual TLS on 127.0.0.1:0).
    pub async fn start(&mut self) {
        self.server = Some(self.setup.start_in_process().await);
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    pub fn running(&self) -> &ota_server::server::RunningServer {
        self.server.as_ref().expect("ota-server not started")
    }

    pub fn addr(&self) -> SocketAddr {
        self.running().local_addr()
    }

    pub fn base_url(&self) -> String {
        format!("https://{}/", self.addr())
    }

    /// Stops re-signing timestamp.json (a frozen server).
    pub fn stop_timestamp_refresh(&self) {
        self.running().stop_timestamp_refresh();
    }

    /// The manufacturer signs `image` as `<manufacturer>/<file>` version
    /// `version` with its own key and uploads it; returns the target name
    /// and the signed role metadata bytes it uploaded.
    pub async fn publish(
        &self,
        manufacturer: &str,
        file: &str,
        version: &str,
        image: &[u8],
    ) -> (String, Vec<u8>) {
        let (_, token) = self.manufacturer(manufacturer);
        let b = self
            .setup
            .release(manufacturer, file, version, Some("1.0.0"), image)
            .await;
        let mut body = b.role_bytes.clone();
        body.extend_from_slice(image);
        let target = b.target;
        let r = self
            .pki
            .client()
            .post(format!("{}api/v1/releases/{target}", self.base_url()))
            .header("X-Wardgate-Metadata-Length", b.role_bytes.len().to_string())
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "upload of {target}: {}",
            r.text().await.unwrap()
        );
        (target, b.role_bytes)
    }

    /// `ota-server export` of the current repository into `out`.
    pub fn export(&self, out: &Path) {
        ota_server::repo::export::export(&self.running().state().repo, out).unwrap();
    }

    /// Sum of the server's metric lines starting with `prefix`.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let url = format!("{}metrics", self.base_url());
        let text = wardgate_tests::https::get_text(&self.pki.client(), &url)
            .await
            .unwrap();
        wardgate_tests::ota_ward::metric(&text, prefix)
    }

    /// Image bytes the server has sent, once it has stopped changing.
    pub async fn settled_sent_bytes(&self) -> f64 {
        wardgate_tests::wait::settled(|| self.metric("wardgate_ota_target_sent_bytes_total")).await
    }

    /// The gateway's `[ota]` section for a server at `base_url`.
    pub fn ota_config(&self, base_url: &str) -> OtaConfig {
        OtaConfig {
            server_url: base_url.to_owned(),
            trusted_root: self.root_json.clone(),
            ca_cert: self.pki.ca_pem.clone(),
            client_cert: self.pki.gateway_cert.clone(),
            client_key: self.pki.gateway_key.clone(),
            refresh_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(20),
            download_timeout: Duration::from_secs(60),
            max_parallel_downloads: 2,
        }
    }

    /// Copies the served repository into `out` and lets a compromised
    /// server (one holding the online snapshot and timestamp keys, never a
    /// manufacturer's) publish `manufacturer`'s role changed by `edit` and
    /// signed by `signer`, with a new snapshot and timestamp over it.
    pub async fn tampered_copy(
        &self,
        out: &Path,
        manufacturer: &str,
        signer: &SigningKey,
        edit: impl FnOnce(&mut Value),
    ) {
        copy_tree(&self.current_gen(), out);
        let repo = RepoDir::new(out);
        let path = repo.metadata_file(&format!("{manufacturer}.json"));
        let mut role: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let signed = role.get_mut("signed").unwrap();
        edit(signed);
        let version = signed["version"].as_u64().unwrap() + 1;
        signed["version"] = Value::from(version);
        let message = wardgate_protocol::offer::canonical_json(signed).unwrap();
        let sig = hex::encode(signer.sign_bytes(&message));
        role["signatures"] = serde_json::json!([{"keyid": signer.key_id(), "sig": sig}]);
        let bytes = serde_json::to_vec(&role).unwrap();
        std::fs::write(
            repo.metadata_file(&format!("{version}.{manufacturer}.json")),
            &bytes,
        )
        .unwrap();
        std::fs::write(&path, &bytes).unwrap();
        tuf_repo::repo::online::snapshot(
            &repo,
            std::slice::from_ref(&self.keys.snapshot),
            Duration::from_secs(7 * 24 * 3600),
        )
        .await
        .unwrap();
        tuf_repo::refresh_timestamp(
            &repo,
            std::slice::from_ref(&self.keys.timestamp),
            Duration::from_secs(24 * 3600),
        )
        .await
        .unwrap();
    }
}

/// A target entry as `tuf-repo` writes it, for `tampered_copy` edits.
pub fn target_entry(image: &[u8], version: &str) -> Value {
    serde_json::json!({
        "length": image.len(),
        "hashes": {"sha256": sha256_hex(image)},
        "custom": {"hardware_ids": [HW], "version": version},
    })
}

pub use wardgate_tests::hash::sha256_hex;

/// Recursive copy (files only; hard links become copies).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Serves a directory over HTTPS (server certificate of the ward PKI;
/// client certificates verified when offered), as a static mirror or CDN.
pub struct StaticServer {
    pub addr: SocketAddr,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl StaticServer {
    pub async fn start(pki: &Pki, root: &Path) -> Self {
        use axum::http::{StatusCode, Uri};
        use axum::response::IntoResponse;
        let tls = ota_server::tls::server_config(&pki.tls_config()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let root = root.to_owned();
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let root = root.clone();
            async move {
                let path = uri.path().trim_start_matches('/');
                if path.split('/').any(|s| s == ".." || s.is_empty()) {
                    return StatusCode::NOT_FOUND.into_response();
                }
                match tokio::fs::read(root.join(path)).await {
                    Ok(bytes) => bytes.into_response(),
                    Err(_) => StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(tls),
        )
        .handle(handle.clone());
        let task = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        Self { addr, handle, task }
    }

    pub fn base_url(&self) -> String {
        format!("https://{}/", self.addr)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.task.abort();
    }
}

/// A TCP proxy in front of a server. Once [`CutProxy::cut_after`] is armed,
/// it drops every open connection and cuts each new one after it has
/// forwarded that many bytes from the server (a link that breaks mid-way).
pub struct CutProxy {
    pub addr: SocketAddr,
    limit: Arc<AtomicU64>,
    epoch: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = Arc::new(AtomicU64::new(u64::MAX));
        let (epoch, _) = tokio::sync::watch::channel(0u64);
        let (l, e) = (Arc::clone(&limit), epoch.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let limit = l.load(Ordering::SeqCst);
                let mut epoch = e.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::io::copy(&mut cr, &mut sw);
                    let down = async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut sent = 0u64;
                        loop {
                            let n = sr.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            let allowed = usize::try_from(limit.saturating_sub(sent))
                                .unwrap_or(usize::MAX)
                                .min(n);
                            cw.write_all(&buf[..allowed]).await?;
                            sent += allowed as u64;
                            if allowed < n {
                                return Ok(());
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = epoch.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            limit,
            epoch,
            task,
        }
    }

    /// Drops open connections; new ones are cut after `bytes` (or never,
    /// for `u64::MAX`).
    pub fn cut_after(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    pub fn base_url(&self) -> String {
        format!("https://{}/", self.addr)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The gateway-side pieces of one test: data dir, audit log, metrics.
pub struct GatewaySide {
    pub dir: tempfile::TempDir,
    pub audit: gateway::audit::AuditLog,
    pub registry: gateway::metrics::Metrics,
    pub metrics: gateway::ota::OtaMetrics,
}

impl GatewaySide {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let audit = gateway::audit::AuditLog::open(&dir.path().join("gateway.db")).unwrap();
        let registry = gateway::metrics::Metrics::new();
        let metrics = gateway::ota::OtaMetrics::register(&registry);
        Self {
            dir,
            audit,
            registry,
            metrics,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A TUF client of this gateway for `config` (a restart opens a new one
    /// over the same data dir).
    pub async fn tuf(&self, config: &OtaConfig) -> gateway::ota::TufClient {
        config.validate().unwrap();
        gateway::ota::TufClient::open(
            config,
            self.data_dir(),
            self.audit.clone(),
            self.metrics.clone(),
        )
        .await
        .unwrap()
        .with_alerts(self.alert_store())
    }

    /// The alert store in this gateway's database.
    pub fn alert_store(&self) -> gateway::anomaly::AlertStore {
        gateway::anomaly::AlertStore::open(&self.dir.path().join("gateway.db")).unwrap()
    }

    /// `ota.refresh` audit rows with outcome `refused`, oldest first.
    pub fn refusals(&self) -> Vec<Value> {
        self.audit
            .all()
            .unwrap()
            .into_iter()
            .filter(|r| r.action == "ota.refresh" && r.outcome == "refused")
            .map(|r| r.detail_json())
            .collect()
    }
}

/// A deterministic test image.
pub fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}
