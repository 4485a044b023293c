//! The OTA steps of an operator and a manufacturer, run with the
//! `tuf-repo` binary as they would run them, and the configuration the
//! OTA server and a gateway's `[ota]` section get from them.
//!
//! [`OtaRepo::author`] creates the operator's repository (root, targets,
//! snapshot and timestamp keys; one delegated manufacturer), which
//! `ota-server init --from <authoring>` imports; [`OtaRepo::release`] signs
//! an image as the manufacturer against the server's current repository
//! and gives the body of `POST /api/v1/releases/<target>`. Any end-to-end
//! test that rolls out firmware uses these, whatever network it uploads
//! over (a `reqwest` client on loopback, or a client in a network
//! namespace).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::OnPath;
use crate::Result;

pub use crate::process::run_ok;

/// `tuf-repo init`'s key arguments for the four top-level roles, each key
/// in `<role>.json` as `tuf-repo keygen --out` writes it (the harness's
/// and `tuf-repo`'s own tests set repositories up the same way).
pub const ROLE_KEY_ARGS: [&str; 8] = [
    "--root-key",
    "root.json",
    "--targets-key",
    "targets.json",
    "--snapshot-key",
    "snapshot.json",
    "--timestamp-key",
    "timestamp.json",
];
/// The operator's TUF repository, authored in a folder of the test.
#[derive(Debug, Clone)]
pub struct OtaRepo {
    dir: PathBuf,
    tuf_repo: PathBuf,
    manufacturer: String,
}

/// A signed release, as uploaded to the OTA server.
#[derive(Debug, Clone)]
pub struct Release {
    /// The target name, `<manufacturer>/<file>`.
    pub target: String,
    /// The manufacturer's signed targets role, then the image.
    pub body: Vec<u8>,
    /// Length of the role at the start of `body`: the
    /// `X-Wardgate-Metadata-Length` header.
    pub metadata_len: usize,
}

impl Release {
    /// The upload's path under the server URL.
    #[must_use]
    pub fn upload_path(&self) -> String {
        format!("api/v1/releases/{}", self.target)
    }

    /// Uploads the release to the OTA server at `server_url` (`https://.../`)
    /// with the manufacturer's API `token`: the role, then the image, with
    /// the role's length in `X-Wardgate-Metadata-Length`.
    ///
    /// # Errors
    /// The client's error when the request cannot be sent.
    pub async fn upload(
        self,
        http: &reqwest::Client,
        server_url: &str,
        token: &str,
    ) -> reqwest::Result<reqwest::Response> {
        http.post(format!("{server_url}{}", self.upload_path()))
            .header("X-Wardgate-Metadata-Length", self.metadata_len.to_string())
            .bearer_auth(token)
            .body(self.body)
            .send()
            .await
    }
}

/// The body of `POST /api/v1/campaigns`: roll `target` out to the
/// `gateways` in `waves` (`"1"`, `"25%"`, ...), halted once more than
/// `failure_threshold_percent` of a wave fails.
#[must_use]
pub fn campaign_request(
    name: &str,
    target: &str,
    gateways: &[&str],
    waves: &[&str],
    failure_threshold_percent: f64,
) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "target": target,
        "gateways": gateways,
        "waves": waves,
        "failure_threshold_percent": failure_threshold_percent,
    })
}

/// What the OTA server's configuration names besides the repository keys.
#[derive(Debug, Clone)]
pub struct ServerSettings<'a> {
    /// `listen`, e.g. `127.0.0.1:9443`.
    pub listen: &'a str,
    /// `data_dir`.
    pub data_dir: &'a Path,
    /// The server certificate, its key, and the CA of gateway client
    /// certificates.
    pub cert: &'a Path,
    /// Key of `cert`.
    pub key: &'a Path,
    /// CA that gateway client certificates chain to.
    pub client_ca: &'a Path,
    /// SHA-256 of the operator's (`ops`) API token.
    pub admin_token_sha256: &'a str,
    /// SHA-256 of the manufacturer's API token.
    pub manufacturer_token_sha256: &'a str,
}

/// What a gateway's `[ota]` section names.
#[derive(Debug, Clone)]
pub struct GatewaySettings<'a> {
    /// The OTA server's base URL, `https://.../`.
    pub server_url: &'a str,
    /// CA of the OTA server's certificate.
    pub ca_cert: &'a Path,
    /// The gateway's client certificate (`urn:wardgate:gateway:<id>`).
    pub client_cert: &'a Path,
    /// Key of `client_cert`.
    pub client_key: &'a Path,
    /// Device-side address of the image server.
    pub image_listen: &'a str,
}

impl OtaRepo {
    /// Author the repository in `dir` with the `tuf-repo` binary at
    /// `tuf_repo`: keys of the four roles and of `manufacturer` (written
    /// `<role>.json`, the manufacturer's public key `<manufacturer>.pub.json`),
    /// `init` in `dir/authoring`, the manufacturer's enrolment and
    /// delegation, a snapshot and a timestamp.
    ///
    /// # Errors
    /// [`HarnessError::Failed`] naming the step that failed, with its output.
    pub fn author(dir: &Path, tuf_repo: &Path, manufacturer: &str) -> Result<Self> {
        let repo = Self {
            dir: dir.to_path_buf(),
            tuf_repo: tuf_repo.to_path_buf(),
            manufacturer: manufacturer.to_owned(),
        };
        let key = |k: &str| format!("{k}.json");
        for k in ["root", "targets", "snapshot", "timestamp", manufacturer] {
            repo.run(&["keygen", "--out", &key(k)])?;
        }
        repo.run(&[&["init", "--repo", "authoring"][..], &ROLE_KEY_ARGS].concat())?;
        repo.run(&[
            "enrol",
            "--manufacturer",
            manufacturer,
            "--key",
            &key(manufacturer),
            "--out",
            "enrol.json",
        ])?;
        repo.run(&[
            "delegate",
            "--repo",
            "authoring",
            "--manufacturer",
            manufacturer,
            "--manufacturer-key",
            &format!("{manufacturer}.pub.json"),
            "--enrolment",
            "enrol.json",
            "--targets-key",
            "targets.json",
        ])?;
        repo.run(&["snapshot", "--repo", "authoring", "--key", "snapshot.json"])?;
        repo.run(&[
            "timestamp",
            "--repo",
            "authoring",
            "--key",
            "timestamp.json",
        ])?;
        Ok(repo)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        run_ok(
            Command::new(&self.tuf_repo)
                .current_dir(&self.dir)
                .env("NO_COLOR", "1")
                .args(args),
        )
    }

    /// The authored repository (`ota-server init --from` this).
    #[must_use]
    pub fn authoring(&self) -> PathBuf {
        self.dir.join("authoring")
    }

    /// The root a gateway pins (`ota.trusted_root`).
    #[must_use]
    pub fn trusted_root(&self) -> PathBuf {
        self.authoring().join("metadata/1.root.json")
    }

    /// The manufacturer's public key, as devices are built with it
    /// (`device-sim --manufacturer-key`).
    #[must_use]
    pub fn manufacturer_public_key(&self) -> PathBuf {
        self.dir.join(format!("{}.pub.json", self.manufacturer))
    }

    /// The OTA server's configuration for this repository: its online
    /// snapshot and timestamp keys, an operator `ops` and the manufacturer,
    /// each with an API token.
    #[must_use]
    pub fn server_toml(&self, s: &ServerSettings<'_>) -> String {
        format!(
            r#"listen = "{listen}"
data_dir = "{data}"
log_format = "text"

[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"

[tuf]
snapshot_key = "{d}/snapshot.json"
timestamp_key = "{d}/timestamp.json"
timestamp_expiry = "1day"
timestamp_refresh = "6h"
snapshot_expiry = "7days"

[[admins]]
name = "ops"
token_sha256 = "{admin}"

[[manufacturers]]
name = "{manufacturer}"
token_sha256 = "{mfr}"
"#,
            listen = s.listen,
            data = s.data_dir.display(),
            cert = s.cert.display(),
            key = s.key.display(),
            ca = s.client_ca.display(),
            d = self.dir.display(),
            admin = s.admin_token_sha256,
            manufacturer = self.manufacturer,
            mfr = s.manufacturer_token_sha256,
        )
    }

    /// A gateway's `[ota]` section pinning this repository's root, with
    /// campaign timings short enough for a test.
    #[must_use]
    pub fn gateway_section(&self, g: &GatewaySettings<'_>) -> String {
        format!(
            r#"[ota]
server_url = "{url}"
trusted_root = "{root}"
ca_cert = "{ca}"
client_cert = "{cert}"
client_key = "{key}"
refresh_interval = "10s"
image_listen = "{image}"
assignments_interval = "500ms"
tick_interval = "250ms"
device_reoffer_after = "1s"
device_offer_timeout = "5s"
device_download_timeout = "10s"
device_install_timeout = "20s"
"#,
            url = g.server_url,
            root = self.trusted_root().display(),
            ca = g.ca_cert.display(),
            cert = g.client_cert.display(),
            key = g.client_key.display(),
            image = g.image_listen,
        )
    }

    /// The manufacturer signs `image` as `<file_stem>-<version>.bin` for
    /// `hardware_id` with `tuf-repo release` against `current` (the OTA
    /// server's current repository, `<data_dir>/repo/current`); the upload
    /// body it makes.
    ///
    /// # Errors
    /// [`HarnessError::Io`] or [`HarnessError::Failed`] naming the step.
    pub fn release(
        &self,
        current: &Path,
        file_stem: &str,
        version: &str,
        image: &[u8],
        hardware_id: &str,
    ) -> Result<Release> {
        let file = format!("{file_stem}-{version}.bin");
        let image_path = self.dir.join(&file);
        std::fs::write(&image_path, image).on("write", &image_path)?;
        let bundle = format!("bundle-{file_stem}-{version}");
        self.run(&[
            "release",
            "--repo",
            &current.display().to_string(),
            "--manufacturer",
            &self.manufacturer,
            "--key",
            &format!("{}.json", self.manufacturer),
            "--image",
            &file,
            "--hardware-id",
            hardware_id,
            "--version",
            version,
            "--min-version",
            "1.0.0",
            "--out",
            &bundle,
        ])?;
        let role_path = self
            .dir
            .join(&bundle)
            .join(format!("{}.json", self.manufacturer));
        let mut body = std::fs::read(&role_path).on("read", &role_path)?;
        let metadata_len = body.len();
        body.extend_from_slice(image);
        Ok(Release {
            target: format!("{}/{file}", self.manufacturer),
            body,
            metadata_len,
        })
    }
}
