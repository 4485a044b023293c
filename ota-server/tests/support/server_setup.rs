//! The OTA server fixture that both the OTA server's own tests
//! (`ota-server/tests/support`) and the gateway's OTA tests
//! (`gateway/tests/ota_support`, which include this file by `#[path]`)
//! stand on: a ward CA with the server's certificate, a TUF repository
//! authored with the `tuf-repo` library (root, targets delegating `acme/*`
//! and `globex/*`, snapshot, timestamp), the server's config with an
//! operator and both manufacturers, `ota-server init`, and releases signed
//! by a manufacturer against the served repository.
//!
//! It is not in the `wardgate-tests` harness crate because that crate must
//! not depend on `tuf-repo` or `ota-server` (their tests dev-depend on it);
//! both crates that use this file have those two as dependencies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tuf_repo::firmware::FirmwareMeta;
use tuf_repo::repo::init::OneKeyPerRole;
use tuf_repo::repo::release::ReleaseRequest;
use tuf_repo::{ManufacturerName, RepoDir, SigningKey};
use wardgate_tests::pki::Ca;

/// The hardware id of every test release.
pub const HW: &str = "pump-x1";

/// The offline and online TUF keys of a test repository.
pub struct TufKeys {
    pub root: SigningKey,
    pub targets: SigningKey,
    pub snapshot: SigningKey,
    pub timestamp: SigningKey,
    pub acme: SigningKey,
    pub globex: SigningKey,
}

/// Authors a repository as the operator would with `tuf-repo`: root,
/// targets delegating `acme/*` and `globex/*`, snapshot, timestamp.
pub async fn author_repo(dir: &Path) -> TufKeys {
    let roles = OneKeyPerRole::generate();
    let repo = RepoDir::new(dir);
    repo.create_dirs().unwrap();
    let expiries = tuf_repo::Expiries::default();
    tuf_repo::repo::init::init(&repo, &roles.config(expiries), &roles.signers())
        .await
        .unwrap();
    let (acme, globex) = (SigningKey::generate(), SigningKey::generate());
    for (name, k) in [("acme", &acme), ("globex", &globex)] {
        // The manufacturer enrols (an empty role signed with its key), so
        // tough clients see every delegation before anyone has released.
        let m = ManufacturerName::new(name).unwrap();
        roles.delegate_to(&repo, &m, k, &expiries).await.unwrap();
    }
    let keys = TufKeys {
        root: roles.root,
        targets: roles.targets,
        snapshot: roles.snapshot,
        timestamp: roles.timestamp,
        acme,
        globex,
    };
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

/// Knobs of a server set-up.
#[derive(Clone)]
pub struct Opts {
    pub timestamp_expiry: &'static str,
    pub timestamp_refresh: &'static str,
    pub max_upload_bytes: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            timestamp_expiry: "1day",
            timestamp_refresh: "6h",
            max_upload_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A release bundle made by the manufacturer with `tuf-repo release`.
pub struct Bundle {
    pub target: String,
    pub role_bytes: Vec<u8>,
    pub image: Vec<u8>,
}

/// An OTA server configured and initialised in a temp dir, not started:
/// what every harness built on it shares.
pub struct ServerSetup {
    pub dir: tempfile::TempDir,
    /// The ward CA: it issued the server's certificate and is the CA of
    /// gateway client certificates.
    pub ca: Ca,
    pub ca_pem: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub keys: TufKeys,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub admin_token: String,
    pub acme_token: String,
    pub globex_token: String,
    /// The operator's authored repository (`ota-server init --from` it).
    pub authoring: PathBuf,
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

impl ServerSetup {
    /// PKI, TUF repository, config, `ota-server init`.
    pub async fn new(opts: &Opts) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = Ca::generate("Test Ward CA", 30).unwrap();
        let (ca_pem, _) = ca.write(d).unwrap();
        let (server_cert, server_key) = (d.join("server.pem"), d.join("server.key"));
        ca.issue_server(&["localhost".to_owned(), "127.0.0.1".to_owned()], 30)
            .unwrap()
            .write(&server_cert, &server_key)
            .unwrap();
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
        let data_dir = d.join("data");
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
timestamp_expiry = "{te}"
timestamp_refresh = "{tr}"
snapshot_expiry = "7days"

[limits]
max_upload_bytes = {max}

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
            cert = server_cert.display(),
            key = server_key.display(),
            ca = ca_pem.display(),
            snap = snap_key.display(),
            ts = ts_key.display(),
            te = opts.timestamp_expiry,
            tr = opts.timestamp_refresh,
            max = opts.max_upload_bytes,
        );
        let config_path = write(d, "ota.toml", config);
        let cfg = ota_server::cli::load_config(&config_path).unwrap();
        ota_server::cli::init::run(&cfg, &authoring).await.unwrap();
        Self {
            dir,
            ca,
            ca_pem,
            server_cert,
            server_key,
            keys,
            config_path,
            data_dir,
            admin_token,
            acme_token,
            globex_token,
            authoring,
        }
    }

    /// Version 1 of root.json, the root a client pins.
    pub fn root_v1(&self) -> PathBuf {
        self.authoring.join("metadata/1.root.json")
    }

    /// Starts the server in-process (mutual TLS on 127.0.0.1:0).
    pub async fn start_in_process(&self) -> ota_server::server::RunningServer {
        let cfg = ota_server::cli::load_config(&self.config_path).unwrap();
        ota_server::server::start(cfg, CancellationToken::new())
            .await
            .unwrap()
    }

    /// The generation directory `current` points at (what the server
    /// serves).
    pub fn current_gen(&self) -> PathBuf {
        let repo = self.data_dir.join("repo");
        repo.join(std::fs::read_link(repo.join("current")).unwrap())
    }

    /// The signing key and API token of `manufacturer` (`acme` or
    /// `globex`).
    pub fn manufacturer(&self, manufacturer: &str) -> (&SigningKey, &str) {
        match manufacturer {
            "acme" => (&self.keys.acme, &self.acme_token),
            "globex" => (&self.keys.globex, &self.globex_token),
            other => panic!("unknown manufacturer {other}"),
        }
    }

    /// The manufacturer signs `image` as `<manufacturer>/<file>` at
    /// `version` (for [`HW`], installable from `min_version`, or from any
    /// version for `None`) with its own key against the server's current
    /// repository, as `tuf-repo release` would on its own copy.
    pub async fn release(
        &self,
        manufacturer: &str,
        file: &str,
        version: &str,
        min_version: Option<&str>,
        image: &[u8],
    ) -> Bundle {
        let (key, _) = self.manufacturer(manufacturer);
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
                    min_version.map(|v| v.parse().unwrap()),
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
        Bundle {
            target: b.target.to_string(),
            role_bytes: std::fs::read(&b.role_metadata).unwrap(),
            image: std::fs::read(&b.image).unwrap(),
        }
    }
}
