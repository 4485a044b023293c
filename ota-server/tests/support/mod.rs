//! ota-server-local test support, built on the `wardgate-tests` harness
//! (PKI, HTTPS clients, processes, Python, hashing and waiting come from
//! there): the server set-up shared with the gateway's OTA tests
//! ([`server_setup`]: a TUF repository authored with `tuf-repo`, the
//! server's config and `ota-server init`), that server run on 127.0.0.1:0
//! (in-process or the real binary), and clients (reqwest, tough,
//! python-tuf).
#![allow(dead_code, clippy::missing_panics_doc, missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

// Re-exported for the tests that compare digests as `support::sha256_hex`.
#[allow(unused_imports)]
pub use wardgate_tests::hash::sha256_hex;
use wardgate_tests::pki::Ca;
use wardgate_tests::process::{ChildGuard, Stream};

mod server_setup;
pub use server_setup::{write, Bundle, Opts, ServerSetup};

/// A ready-to-start server setup, run in-process or as the real binary.
/// Its [`ServerSetup`] (keys, tokens, paths, CA) reads through it.
pub struct Harness {
    setup: ServerSetup,
    pub root_json: Vec<u8>,
    pub addr: Option<SocketAddr>,
    server: Option<ota_server::server::RunningServer>,
    process: Option<ChildGuard>,
}

impl std::ops::Deref for Harness {
    type Target = ServerSetup;

    fn deref(&self) -> &ServerSetup {
        &self.setup
    }
}

impl Harness {
    /// PKI, TUF repository, config, `ota-server init`; the server is not
    /// started yet.
    pub async fn new(opts: Opts) -> Self {
        let setup = ServerSetup::new(&opts).await;
        let root_json = std::fs::read(setup.root_v1()).unwrap();
        Self {
            setup,
            root_json,
            addr: None,
            server: None,
            process: None,
        }
    }

    /// [`Harness::new`] then [`Harness::start`]: a running in-process server.
    pub async fn started(opts: Opts) -> Self {
        let mut h = Self::new(opts).await;
        h.start().await;
        h
    }

    /// A started server with default options and acme's `file` (version
    /// `version`, bytes `image`) already published: where most campaign
    /// tests begin.
    pub async fn with_acme_release(file: &str, version: &str, image: &[u8]) -> Self {
        let h = Self::started(Opts::default()).await;
        h.publish_acme(file, version, image).await;
        h
    }

    /// As [`Harness::with_acme_release`] with a patterned image of `len`
    /// bytes; returns the image too.
    pub async fn with_patterned_acme_release(
        file: &str,
        version: &str,
        len: u32,
    ) -> (Self, Vec<u8>) {
        let image = patterned_image(len);
        (Self::with_acme_release(file, version, &image).await, image)
    }

    /// Starts the server in-process.
    pub async fn start(&mut self) {
        let s = self.setup.start_in_process().await;
        self.addr = Some(s.local_addr());
        self.server = Some(s);
    }

    pub fn server(&self) -> &ota_server::server::RunningServer {
        self.server.as_ref().unwrap()
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// Starts the real binary and waits (by reading its log) until it
    /// listens.
    pub fn start_process(&mut self) {
        let mut child = ChildGuard::spawn(
            Command::new(env!("CARGO_BIN_EXE_ota-server"))
                .args(["serve", "--config"])
                .arg(&self.config_path)
                .env("WARDGATE_LOG", "info")
                .env("NO_COLOR", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let addr = child
            .wait_for_line(Stream::Stderr, Duration::from_secs(60), |line| {
                let (_, rest) = line.split_once("addr=")?;
                rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
            })
            .expect("ota-server did not report its address");
        self.addr = Some(addr);
        self.process = Some(child);
    }

    /// SIGKILL the binary.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill9();
        }
    }

    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr.unwrap())
    }

    /// An HTTPS client trusting the test CA, without a client certificate.
    pub fn client(&self) -> reqwest::Client {
        wardgate_tests::https::client(&self.ca.cert_pem).unwrap()
    }

    /// A client presenting gateway `id`'s certificate from `ca`.
    pub fn gateway_client(&self, ca: &Ca, id: &str) -> reqwest::Client {
        let identity = ca.issue_gateway(id, 30).unwrap();
        wardgate_tests::https::client_with_identity(&self.ca.cert_pem, &identity).unwrap()
    }

    /// Uploads metadata + image to the release API.
    pub async fn upload(
        &self,
        token: Option<&str>,
        target: &str,
        role_bytes: &[u8],
        image: &[u8],
    ) -> reqwest::Response {
        self.try_upload(token, target, role_bytes, image)
            .await
            .unwrap()
    }

    /// Like [`Harness::upload`], but returns transport errors: a server that
    /// refuses from the headers alone may close before the body is written.
    pub async fn try_upload(
        &self,
        token: Option<&str>,
        target: &str,
        role_bytes: &[u8],
        image: &[u8],
    ) -> reqwest::Result<reqwest::Response> {
        let mut body = role_bytes.to_vec();
        body.extend_from_slice(image);
        let mut rb = self
            .client()
            .post(format!("{}/api/v1/releases/{target}", self.base_url()))
            .header("X-Wardgate-Metadata-Length", role_bytes.len().to_string())
            .body(body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb.send().await
    }

    pub async fn upload_bundle(&self, token: &str, b: &Bundle) -> reqwest::Response {
        self.upload(Some(token), &b.target, &b.role_bytes, &b.image)
            .await
    }

    /// acme releases `image` as `acme/<file>` at `version` and uploads it;
    /// the server must publish it (201).
    pub async fn publish_acme(&self, file: &str, version: &str, image: &[u8]) -> Bundle {
        let b = self.release("acme", file, version, None, image).await;
        let r = self.upload_bundle(&self.acme_token, &b).await;
        assert_eq!(r.status(), 201, "publishing acme/{file}");
        b
    }

    /// Where a client downloads acme's `file` holding `image` (the
    /// consistent-snapshot name, prefixed by the image's SHA-256).
    pub fn acme_target_url(&self, file: &str, image: &[u8]) -> String {
        format!(
            "{}/targets/acme/{}.{file}",
            self.base_url(),
            sha256_hex(image)
        )
    }

    /// An unauthenticated GET of `path` (`/healthz`, `/metrics`, ...).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client()
            .get(format!("{}{path}", self.base_url()))
            .send()
            .await
            .unwrap()
    }

    /// An admin POST of `body` to `path`: the status and the JSON answer.
    pub async fn admin_post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        post_json(
            &self.client(),
            format!("{}{path}", self.base_url()),
            Some(&self.admin_token),
            body,
        )
        .await
    }

    /// An admin creates the campaign `body`; the server must accept it (201).
    /// Returns the campaign's id.
    pub async fn create_campaign(&self, body: serde_json::Value) -> String {
        let (status, created) = self.admin_post("/api/v1/campaigns", body).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    /// A gateway (the client `gw` with its certificate) POSTs `body` to
    /// `/api/v1/gateway/<what>`: the status and the JSON answer.
    pub async fn gateway_post(
        &self,
        gw: &reqwest::Client,
        what: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        post_json(
            gw,
            format!("{}/api/v1/gateway/{what}", self.base_url()),
            None,
            body,
        )
        .await
    }

    /// Every metadata file of the current generation, for byte-for-byte
    /// comparisons.
    pub fn metadata_files(&self) -> BTreeMap<String, Vec<u8>> {
        let meta = self.current_gen().join("metadata");
        std::fs::read_dir(&meta)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    /// GET `path` with `token`, whatever the answer.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client()
            .get(format!("{}{path}", self.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Admin GET returning JSON.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let r = self.get_as(path, &self.admin_token).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// The newest audit row.
    pub async fn last_audit(&self) -> serde_json::Value {
        let rows = self.admin_get("/api/v1/audit?limit=5").await;
        // The admin's own GET is not audited, so row 0 is the last action.
        rows[0].clone()
    }

    /// Value of a metric line starting with `prefix` (0 if absent).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        wardgate_tests::ota_ward::metric(&text, prefix)
    }

    /// A tough-backed HTTPS transport trusting the test CA.
    pub fn transport(&self) -> tuf_repo::HttpsTransport {
        tuf_repo::HttpsTransport::new(&tuf_repo::HttpsTransportConfig {
            ca_pem: self.ca.cert_pem.clone().into_bytes(),
            client_identity: None,
            timeout: Some(Duration::from_secs(30)),
        })
        .unwrap()
    }

    /// Loads the repository from the server with tough (root pinned to
    /// version 1) and returns the target's verified bytes.
    pub async fn tough_fetch(&self, target: &str) -> Result<Vec<u8>, String> {
        let loc = tuf_repo::RepoLocation::Url(url::Url::parse(&self.base_url()).unwrap());
        tuf_repo::verify::fetch_target(&loc, &self.root_json, self.transport(), target)
            .await
            .map_err(|e| e.to_string())
    }

    /// Runs python-tuf's ngclient against the server; returns its stdout
    /// (the SHA-256 of the downloaded target) or stderr on failure.
    pub fn python_fetch(&self, target: &str) -> Result<String, String> {
        let py = wardgate_tests::python::python().unwrap_or_else(|e| panic!("{e}"));
        let work = tempfile::tempdir_in(self.dir.path()).unwrap();
        let meta = work.path().join("meta");
        let dl = work.path().join("dl");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::create_dir_all(&dl).unwrap();
        std::fs::write(meta.join("root.json"), &self.root_json).unwrap();
        let ca = write(work.path(), "ca.pem", &self.ca.cert_pem);
        let script = r#"
import hashlib, os, sys
from tuf.ngclient import Updater, Urllib3Fetcher
from tuf.ngclient._internal.proxy import ProxyEnvironment
meta, dl, base, target = sys.argv[1:5]
fetcher = Urllib3Fetcher()
# Trust the test CA the way requests would (REQUESTS_CA_BUNDLE).
fetcher._proxy_env = ProxyEnvironment(ca_certs=os.environ["REQUESTS_CA_BUNDLE"])
u = Updater(metadata_dir=meta, metadata_base_url=base + "/metadata/",
            target_base_url=base + "/targets/", target_dir=dl, fetcher=fetcher,
            bootstrap=open(os.path.join(meta, "root.json"), "rb").read())
u.refresh()
info = u.get_targetinfo(target)
if info is None:
    sys.exit("target not found: " + target)
path = u.download_target(info)
print(hashlib.sha256(open(path, "rb").read()).hexdigest())
"#;
        let script_path = write(work.path(), "fetch.py", script);
        let out = Command::new(&py)
            .arg(&script_path)
            .arg(&meta)
            .arg(&dl)
            .arg(self.base_url())
            .arg(target)
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; run scripts/setup-test-deps",
                    py.display()
                )
            });
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

/// An image of `len` bytes in a repeating pattern (large enough to span
/// several reads).
pub fn patterned_image(len: u32) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8).collect()
}

/// POSTs JSON `body` to `url` (with a bearer `token` if given): the status
/// and the JSON answer (`null` when the answer is not JSON).
pub async fn post_json(
    c: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut rb = c.post(url).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

/// Byte-for-byte equality of two metadata sets, naming what differs.
pub fn assert_same_metadata(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let differ: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "repository metadata changed after {what}: {differ:?}"
    );
}
