//! Shared harness of the gateway's OTA tests: a ward PKI (rcgen), a TUF
//! repository authored with `tuf-repo` (root, targets delegating `acme/*`
//! and `globex/*`, snapshot, timestamp), a real `ota-server` on 127.0.0.1:0
//! (in-process, mutual TLS), manufacturer releases uploaded through its API,
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
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tuf_repo::firmware::FirmwareMeta;
use tuf_repo::repo::init::{InitConfig, InitSigners, RoleSpec};
use tuf_repo::repo::release::ReleaseRequest;
use tuf_repo::{ManufacturerName, RepoDir, SigningKey};

/// The hardware id of every test release.
pub const HW: &str = "pump-x1";

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

fn private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// The ward CA and the files it issued, in `dir`.
pub struct Pki {
    pub ca_pem: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub gateway_cert: PathBuf,
    pub gateway_key: PathBuf,
    ca_text: String,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "Test Ward CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = p.self_signed(&ca_key).unwrap();

        let skey = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        sp.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&skey, &ca, &ca_key).unwrap();

        let gkey = KeyPair::generate().unwrap();
        let mut gp = CertificateParams::new(Vec::<String>::new()).unwrap();
        gp.distinguished_name.push(DnType::CommonName, "ward-3a");
        gp.subject_alt_names.push(SanType::URI(
            "urn:wardgate:gateway:ward-3a".try_into().unwrap(),
        ));
        gp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let gw = gp.signed_by(&gkey, &ca, &ca_key).unwrap();

        let server_key = write(dir, "server.key", skey.serialize_pem());
        let gateway_key = write(dir, "gateway.key", gkey.serialize_pem());
        private(&server_key);
        private(&gateway_key);
        Self {
            ca_pem: write(dir, "ca.pem", ca.pem()),
            server_cert: write(dir, "server.pem", server.pem()),
            server_key,
            gateway_cert: write(dir, "gateway.pem", gw.pem()),
            gateway_key,
            ca_text: ca.pem(),
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
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_text.as_bytes()).unwrap())
            .no_proxy()
            .build()
            .unwrap()
    }
}

/// The offline and online TUF keys of the test repository.
pub struct TufKeys {
    pub root: SigningKey,
    pub targets: SigningKey,
    pub snapshot: SigningKey,
    pub timestamp: SigningKey,
    pub acme: SigningKey,
    pub globex: SigningKey,
}

fn spec(k: &SigningKey) -> RoleSpec {
    RoleSpec {
        keys: vec![k.public_key()],
        threshold: 1,
    }
}

/// Authors a repository as the operator would with `tuf-repo`.
pub async fn author_repo(dir: &Path) -> TufKeys {
    let keys = TufKeys {
        root: SigningKey::generate(),
        targets: SigningKey::generate(),
        snapshot: SigningKey::generate(),
        timestamp: SigningKey::generate(),
        acme: SigningKey::generate(),
        globex: SigningKey::generate(),
    };
    let repo = RepoDir::new(dir);
    repo.create_dirs().unwrap();
    let expiries = tuf_repo::Expiries::default();
    tuf_repo::repo::init::init(
        &repo,
        &InitConfig {
            root: spec(&keys.root),
            targets: spec(&keys.targets),
            snapshot: spec(&keys.snapshot),
            timestamp: spec(&keys.timestamp),
            expiries,
        },
        &InitSigners {
            root: vec![keys.root.clone()],
            targets: vec![keys.targets.clone()],
            snapshot: vec![keys.snapshot.clone()],
            timestamp: vec![keys.timestamp.clone()],
        },
    )
    .await
    .unwrap();
    for (name, k) in [("acme", &keys.acme), ("globex", &keys.globex)] {
        let m = ManufacturerName::new(name).unwrap();
        let enrolment =
            tuf_repo::repo::delegate::enrol(&m, std::slice::from_ref(k), 1, expiries.delegated)
                .await
                .unwrap();
        tuf_repo::repo::delegate::delegate(
            &repo,
            &m,
            &[k.public_key()],
            1,
            std::slice::from_ref(&keys.targets),
            expiries.targets,
            Some(&enrolment),
        )
        .await
        .unwrap();
    }
    tuf_repo::repo::online::snapshot(
        &repo,
        std::slice::from_ref(&keys.snapshot),
        expiries.snapshot,
    )
    .await
    .unwrap();
    tuf_repo::refresh_timestamp(
        &repo,
        std::slice::from_ref(&keys.timestamp),
        expiries.timestamp,
    )
    .await
    .unwrap();
    keys
}

/// A real `ota-server` with its PKI and repository, in a temp dir.
pub struct OtaServer {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub keys: TufKeys,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub admin_token: String,
    pub acme_token: String,
    pub globex_token: String,
    /// Version 1 of root.json (what gateways pin).
    pub root_json: PathBuf,
    server: Option<ota_server::server::RunningServer>,
}

impl OtaServer {
    /// PKI, repository, config and `ota-server init`; not started.
    pub async fn new(timestamp_expiry: &str, timestamp_refresh: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pki = Pki::new(d);
        let authoring = d.join("authoring");
        let keys = author_repo(&authoring).await;
        let snap_key = d.join("snapshot.key");
        let ts_key = d.join("timestamp.key");
        keys.snapshot
            .save(&snap_key, None, tuf_repo::KdfParams::default())
            .unwrap();
        keys.timestamp
            .save(&ts_key, None, tuf_repo::KdfParams::default())
            .unwrap();
        let (admin_token, admin_hash) = ota_server::auth::new_token();
        let (acme_token, acme_hash) = ota_server::auth::new_token();
        let (globex_token, globex_hash) = ota_server::auth::new_token();
        let data_dir = d.join("ota-data");
        let config = format!(
            r#"
listen = "127.0.0.1:0"
data_dir = "{data}"

[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"

[tuf]
snapshot_key = "{snap}"
timestamp_key = "{ts}"
timestamp_expiry = "{timestamp_expiry}"
timestamp_refresh = "{timestamp_refresh}"
snapshot_expiry = "7days"

[limits]
max_upload_bytes = 67108864

[[admins]]
name = "ops"
token_sha256 = "{admin_hash}"

[[manufacturers]]
name = "acme"
token_sha256 = "{acme_hash}"

[[manufacturers]]
name = "globex"
token_sha256 = "{globex_hash}"
"#,
            data = data_dir.display(),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            ca = pki.ca_pem.display(),
            snap = snap_key.display(),
            ts = ts_key.display(),
        );
        let config_path = write(d, "ota.toml", config);
        let cfg = ota_server::cli::load_config(&config_path).unwrap();
        ota_server::cli::init::run(&cfg, &authoring).await.unwrap();
        let root_json = write(
            d,
            "pinned-root.json",
            std::fs::read(authoring.join("metadata/1.root.json")).unwrap(),
        );
        Self {
            dir,
            pki,
            keys,
            config_path,
            data_dir,
            admin_token,
            acme_token,
            globex_token,
            root_json,
            server: None,
        }
    }

    /// Starts the server in-process (mutual TLS on 127.0.0.1:0).
    pub async fn start(&mut self) {
        let cfg = ota_server::cli::load_config(&self.config_path).unwrap();
        let s = ota_server::server::start(cfg, CancellationToken::new())
            .await
            .unwrap();
        self.server = Some(s);
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

    /// The generation directory the server currently serves.
    pub fn current_gen(&self) -> PathBuf {
        let repo = self.data_dir.join("repo");
        repo.join(std::fs::read_link(repo.join("current")).unwrap())
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
        let (key, token) = match manufacturer {
            "acme" => (&self.keys.acme, &self.acme_token),
            "globex" => (&self.keys.globex, &self.globex_token),
            other => panic!("unknown manufacturer {other}"),
        };
        let work = tempfile::tempdir_in(self.dir.path()).unwrap();
        let img = write(work.path(), file, image);
        let b = tuf_repo::repo::release::release(
            &RepoDir::new(self.current_gen()),
            &ReleaseRequest {
                manufacturer: ManufacturerName::new(manufacturer).unwrap(),
                target: format!("{manufacturer}/{file}"),
                image: img,
                firmware: FirmwareMeta::new(
                    vec![HW.into()],
                    version.parse().unwrap(),
                    Some("1.0.0".parse().unwrap()),
                    None,
                )
                .unwrap(),
                expiry: Duration::from_secs(30 * 24 * 3600),
            },
            std::slice::from_ref(key),
            &work.path().join("bundle"),
        )
        .await
        .unwrap();
        let role = std::fs::read(&b.role_metadata).unwrap();
        let mut body = role.clone();
        body.extend_from_slice(image);
        let target = b.target.to_string();
        let r = self
            .pki
            .client()
            .post(format!("{}api/v1/releases/{target}", self.base_url()))
            .header("X-Wardgate-Metadata-Length", role.len().to_string())
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
        (target, role)
    }

    /// `ota-server export` of the current repository into `out`.
    pub fn export(&self, out: &Path) {
        ota_server::repo::export::export(&self.running().state().repo, out).unwrap();
    }

    /// Sum of the server's metric lines starting with `prefix`.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = self
            .pki
            .client()
            .get(format!("{}metrics", self.base_url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Image bytes the server has sent, once it has stopped changing.
    pub async fn settled_sent_bytes(&self) -> f64 {
        let mut last = self.metric("wardgate_ota_target_sent_bytes_total").await;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.metric("wardgate_ota_target_sent_bytes_total").await;
            if (now - last).abs() < f64::EPSILON {
                return now;
            }
            last = now;
        }
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

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

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
