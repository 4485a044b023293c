//! One ward with the real processes, for the end-to-end OTA tests
//! (`tests/tests/ota_*_e2e.rs`): `tuf-repo` authors the operator's
//! repository and the manufacturer's signed releases, `ota-server serve`
//! (mutual TLS) imports it, `gateway run` has an `[ota]` section and
//! enrolled devices, and `device-sim` processes run devices with A/B slots
//! in their state folders and fault switches.
//!
//! Everything goes through the binaries and their sockets, so this module
//! needs none of the crates it drives (see the crate docs): the OTA server's
//! tokens are made here as `ota-server token` makes them, and the gateway's
//! audit rows are read with `gateway audit export`.
//!
//! Helpers panic with the failing command's output or the gateway's log
//! tail: they are test fixtures, and the panic message is the report.
//! On a panicking test, [`Ward`]'s drop keeps every process's log in
//! `$TMPDIR/ota-e2e-logs-<pid>`.
#![allow(clippy::missing_panics_doc)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wardgate_protocol::DeviceId;

use crate::bins::Bins;
use crate::ota::{campaign_request, GatewaySettings, OtaRepo, ServerSettings};
use crate::pki::PkiDir;
use crate::port::free_port;
use crate::process::{read_log, ChildGuard};
use crate::wait::wait_for_async;

/// The hardware id of the ward's pumps.
pub const HW: &str = "pump-x1";
/// The gateway's id (in its client certificate for the OTA server).
pub const GATEWAY_ID: &str = "ward-3a";

/// A new OTA server token and its SHA-256 hex, as `ota-server token` makes
/// them: 32 random bytes as `wgota_<hex>`.
#[must_use]
pub fn new_token() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = format!("wgota_{}", hex::encode(raw));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

/// One row of the gateway's audit log, as `gateway audit export` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Row id (1-based, in order of appending).
    pub id: i64,
    /// When it was appended.
    pub ts: chrono::DateTime<chrono::Utc>,
    /// Who acted.
    pub actor: String,
    /// What was done (`ota.offer`, `ota.result`, ...).
    pub action: String,
    /// On what (usually a device id).
    pub subject: String,
    /// `allowed`, `refused` or `info`.
    pub outcome: String,
    /// The detail as JSON text.
    pub detail: String,
}

impl AuditRow {
    /// Parse one line of `gateway audit export`.
    #[must_use]
    pub fn from_export(line: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(line).ok()?;
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        Some(Self {
            id: v["id"].as_i64()?,
            ts: v["ts"].as_str()?.parse().ok()?,
            actor: text("actor")?,
            action: text("action")?,
            subject: text("subject")?,
            outcome: text("outcome")?,
            detail: text("detail")?,
        })
    }

    /// The detail parsed (`null` if it is not JSON).
    #[must_use]
    pub fn detail_json(&self) -> Value {
        serde_json::from_str(&self.detail).unwrap_or(Value::Null)
    }
}

/// Run a command to completion; its stdout, or a panic with its output.
pub fn ok(cmd: &mut Command) -> String {
    crate::process::run_ok(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// The value after `label` on a line of `out`.
pub fn field(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label:?} in {out}"))
}

/// A firmware image of `len` bytes, different for each `seed`.
#[must_use]
pub fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// The id of pump `i` (`pump-07`).
pub fn device_id(i: usize) -> String {
    format!("pump-{i:02}")
}

/// Sum of the metric lines starting with `prefix` in Prometheus text.
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One ward: its temp dir (keys, repositories, configs, data dirs, logs)
/// and the processes running on it, killed on drop.
pub struct Ward {
    /// Everything of the ward lives here.
    pub dir: tempfile::TempDir,
    /// The ward CA and its certificates.
    pub pki: PkiDir,
    /// HTTPS client trusting the ward CA.
    pub http: reqwest::Client,
    /// The OTA server's port.
    pub ota_port: u16,
    /// OTA server admin token.
    pub admin_token: String,
    /// OTA server token of manufacturer `acme`.
    pub acme_token: String,
    /// The OTA server's data dir.
    pub ota_data: PathBuf,
    /// `gateway.toml`.
    pub gateway_config: PathBuf,
    /// The operator's repository (keys and authoring folder in `dir`).
    pub repo: Option<OtaRepo>,
    /// The gateway's admin API port.
    pub admin_port: u16,
    /// Gateway admin token, role viewer.
    pub viewer: String,
    /// Gateway admin token, role operator.
    pub operator: String,
    /// `ota-server serve`.
    pub ota_server: Option<ChildGuard>,
    /// `gateway run`.
    pub gateway: Option<ChildGuard>,
    /// `device-sim` processes by name (their log is `<name>.log`).
    pub devices: Vec<(String, ChildGuard)>,
}

impl Ward {
    /// A file of the ward's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The operator authors the repository with `tuf-repo` and the OTA
    /// server imports it; the gateway gets its PKI and configuration; the
    /// devices are enrolled with `gateway device enroll`.
    pub async fn new(devices: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::generate(&dir.path().join("pki"), "Ward 3A CA").unwrap();
        let ca_pem = std::fs::read_to_string(&pki.ca_path).unwrap();
        let http = crate::https::client(&ca_pem).unwrap();
        let (admin_token, admin_hash) = new_token();
        let (acme_token, acme_hash) = new_token();
        let mut w = Self {
            ota_data: dir.path().join("ota-data"),
            gateway_config: dir.path().join("gateway.toml"),
            repo: None,
            dir,
            pki,
            http,
            ota_port: free_port().unwrap(),
            admin_token,
            acme_token,
            admin_port: free_port().unwrap(),
            viewer: String::new(),
            operator: String::new(),
            ota_server: None,
            gateway: None,
            devices: Vec::new(),
        };
        let repo = OtaRepo::author(w.dir.path(), &Bins::for_tests().path("tuf-repo"), "acme")
            .unwrap_or_else(|e| panic!("{e}"));
        let listen = format!("127.0.0.1:{}", w.ota_port);
        let ota_toml = repo.server_toml(&ServerSettings {
            listen: &listen,
            data_dir: &w.ota_data,
            cert: &w.pki.server_cert,
            key: &w.pki.server_key,
            client_ca: &w.pki.ca_path,
            admin_token_sha256: &admin_hash,
            manufacturer_token_sha256: &acme_hash,
        });
        w.repo = Some(repo);
        std::fs::write(w.path("ota.toml"), ota_toml).unwrap();
        ok(Bins::for_tests()
            .cmd("ota-server")
            .args(["init", "--config"])
            .arg(w.path("ota.toml"))
            .arg("--from")
            .arg(w.path("authoring")));

        // The gateway: client certificate for the OTA server, config, devices.
        let gw = w.pki.ca.issue_gateway(GATEWAY_ID, 30).unwrap();
        let gw_files = w.pki.write_files("gateway-client", &gw).unwrap();
        let edge_port = free_port().unwrap();
        let ota_section = w.ota_repo().gateway_section(&GatewaySettings {
            server_url: &w.ota_url(),
            ca_cert: &w.pki.ca_path,
            client_cert: &gw_files.cert,
            client_key: &gw_files.key,
            image_listen: &format!("127.0.0.1:{}", free_port().unwrap()),
        });
        let config = format!(
            r#"[storage]
data_dir = "{data}"

[edge]
listen = "127.0.0.1:{edge_port}"
ca_cert = "{ca}"
server_cert = "{cert}"
server_key = "{key}"

[admin]
bind = "127.0.0.1:{admin_port}"

{ota_section}"#,
            data = w.path("gateway-data").display(),
            ca = w.pki.ca_path.display(),
            cert = w.pki.server_cert.display(),
            key = w.pki.server_key.display(),
            admin_port = w.admin_port,
        );
        std::fs::write(&w.gateway_config, config).unwrap();
        for i in 1..=devices {
            let id = device_id(i);
            w.pki.device(&DeviceId::parse(&id).unwrap()).unwrap();
            ok(Bins::for_tests()
                .cmd("gateway")
                .arg("device")
                .arg("--config")
                .arg(&w.gateway_config)
                .args(["enroll", "--id", &id, "--model", "Pump X1"])
                .args(["--hardware-id", HW, "--manufacturer", "acme"])
                .args(["--firmware", "1.0.0"]));
        }
        for (role, slot) in [("viewer", 0), ("operator", 1)] {
            let out = ok(Bins::for_tests()
                .cmd("gateway")
                .arg("access")
                .arg("--config")
                .arg(&w.gateway_config)
                .args(["token", "create", "--name", &format!("e2e.{role}")])
                .args(["--role", role]));
            let secret = field(&out, "secret:");
            if slot == 0 {
                w.viewer = secret;
            } else {
                w.operator = secret;
            }
        }
        w.start_ota_server();
        w.start_gateway();
        w
    }

    /// Start `ota-server serve` and wait for its port.
    pub fn start_ota_server(&mut self) {
        let mut cmd = Bins::for_tests().cmd("ota-server");
        cmd.args(["serve", "--config"]).arg(self.path("ota.toml"));
        self.ota_server = Some(self.spawn_serving("ota-server", &mut cmd, self.ota_port));
    }

    /// Spawns the server `cmd` with its output in `<name>.log` and waits
    /// until it accepts on `port`; panics with the log if it does not.
    fn spawn_serving(&self, name: &str, cmd: &mut Command, port: u16) -> ChildGuard {
        let log = self.path(&format!("{name}.log"));
        let mut child = ChildGuard::spawn_logged(cmd, &log).unwrap();
        child
            .wait_for_port(port, Duration::from_secs(30), name, || read_log(&log))
            .unwrap();
        child
    }

    /// Start `gateway run` and wait for its admin API.
    pub fn start_gateway(&mut self) {
        let mut cmd = Bins::for_tests().cmd("gateway");
        cmd.args(["run", "--config"]).arg(&self.gateway_config);
        // The admin API starts last, after the OTA agent and its image server.
        self.gateway = Some(self.spawn_serving("gateway", &mut cmd, self.admin_port));
    }

    /// `device-sim` running devices `first..first+n` with `faults`.
    pub fn start_devices(&mut self, name: &str, first: usize, n: usize, faults: &[&str]) {
        let log = self.path(&format!("{name}.log"));
        let edge_port = self.edge_port();
        let mut cmd = Bins::for_tests().cmd("device-sim");
        cmd.args(["--host", "localhost", "--port", &edge_port.to_string()])
            .arg("--ca")
            .arg(&self.pki.ca_path)
            .arg("--cert-dir")
            .arg(&self.pki.dir)
            .args(["--prefix", "pump", "--first", &first.to_string()])
            .args(["--devices", &n.to_string(), "--interval", "2s"])
            .arg("--state-dir")
            .arg(self.path("nvram"))
            .args(["--hardware-id", HW, "--firmware", "1.0.0"])
            .arg("--manufacturer-key")
            .arg(self.path("acme.pub.json"))
            .args(["--health-window", "5s"]);
        for f in faults {
            cmd.args(["--fault", f]);
        }
        let child = ChildGuard::spawn_logged(&mut cmd, &log).unwrap();
        self.devices.push((name.to_owned(), child));
    }

    /// The `device-sim` process started as `name`.
    pub fn device_process(&mut self, name: &str) -> &mut ChildGuard {
        &mut self
            .devices
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("device process")
            .1
    }

    /// The gateway's edge (MQTT over TLS) port.
    pub fn edge_port(&self) -> u16 {
        let text = std::fs::read_to_string(&self.gateway_config).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("listen = \"127.0.0.1:"))
            .unwrap();
        line.trim_start_matches("listen = \"127.0.0.1:")
            .trim_end_matches('"')
            .parse()
            .unwrap()
    }

    /// The operator's repository.
    pub fn ota_repo(&self) -> &OtaRepo {
        self.repo
            .as_ref()
            .expect("the repository is authored in Ward::new")
    }

    /// The manufacturer signs `version` with `tuf-repo release` against the
    /// server's current repository and uploads it.
    pub async fn publish(&self, version: &str, img: &[u8]) -> String {
        let release = self
            .ota_repo()
            .release(
                &self.ota_data.join("repo/current"),
                "pump",
                version,
                img,
                HW,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let target = release.target.clone();
        let r = release
            .upload(&self.http, &self.ota_url(), &self.acme_token)
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "upload {target}: {}",
            r.text().await.unwrap()
        );
        target
    }

    /// The OTA server's base URL.
    pub fn ota_url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.ota_port)
    }

    /// A URL of the gateway's admin API.
    pub fn admin_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.admin_port)
    }

    /// A campaign for `target` on this ward's gateway, waves
    /// `["1", "25%", "100%"]`; its id.
    pub async fn campaign(&self, target: &str, threshold: f64) -> String {
        self.campaign_with(target, &["1", "25%", "100%"], threshold)
            .await
    }

    /// A campaign for `target` on this ward's gateway with `waves`; its id.
    pub async fn campaign_with(&self, target: &str, waves: &[&str], threshold: f64) -> String {
        let body = campaign_request(target, target, &[GATEWAY_ID], waves, threshold);
        let r = self
            .http
            .post(format!("{}api/v1/campaigns", self.ota_url()))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create campaign for {target}");
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// `GET /api/v1/campaigns/<id>` at the OTA server.
    pub async fn server_campaign(&self, id: &str) -> Value {
        let url = format!("{}api/v1/campaigns/{id}", self.ota_url());
        crate::https::get_json(&self.http, &url, &self.admin_token)
            .await
            .unwrap()
    }

    /// The OTA server's image bytes sent, once it stops changing.
    pub async fn ota_sent_bytes(&self) -> f64 {
        let read = || async {
            let url = format!("{}metrics", self.ota_url());
            let text = crate::https::get_text(&self.http, &url).await.unwrap();
            metric(&text, "wardgate_ota_target_sent_bytes_total")
        };
        crate::wait::settled(read).await
    }

    /// `POST /api/v1/ota/devices/<id>/retry` at the gateway's admin API with
    /// the admin `token` (the operator's; a viewer's is refused).
    pub async fn retry_device(&self, id: &str, token: &str) -> reqwest::Response {
        self.http
            .post(self.admin_url(&format!("/api/v1/ota/devices/{id}/retry")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `GET /api/v1/ota/status` (viewer), or `None` while the gateway is
    /// not answering.
    pub async fn status(&self) -> Option<Value> {
        let r = self
            .http
            .get(self.admin_url("/api/v1/ota/status"))
            .bearer_auth(&self.viewer)
            .send()
            .await
            .ok()?;
        assert_eq!(r.status(), 200);
        r.json().await.ok()
    }

    /// The gateway's `/metrics` text.
    pub async fn gateway_metrics(&self) -> String {
        self.http
            .get(self.admin_url("/metrics"))
            .bearer_auth(&self.viewer)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The campaign's entry in the gateway's status.
    pub async fn gateway_campaign(&self, id: &str) -> Option<Value> {
        let s = self.status().await?;
        s["campaigns"]
            .as_array()?
            .iter()
            .find(|c| c["campaign_id"] == id)
            .cloned()
    }

    /// Poll the gateway's campaign until `f` holds; panic with the
    /// campaign and the gateway's log tail after `limit`.
    pub async fn wait_campaign(
        &self,
        id: &str,
        limit: Duration,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let got = wait_for_async(limit, || async {
            self.gateway_campaign(id).await.filter(|c| f(c))
        })
        .await;
        match got {
            Some(c) => c,
            None => panic!(
                "timed out waiting for {what}: {:#}\n--- gateway log tail ---\n{}",
                self.gateway_campaign(id).await.unwrap_or(Value::Null),
                tail(&read_log(&self.path("gateway.log")), 40)
            ),
        }
    }

    /// Audit rows of the gateway database with `action`, oldest first,
    /// read with `gateway audit export` (beside the running gateway).
    pub fn audit(&self, action: &str) -> Vec<AuditRow> {
        let out = ok(Bins::for_tests()
            .cmd("gateway")
            .args(["audit", "--config"])
            .arg(&self.gateway_config)
            .arg("export"));
        out.lines()
            .map(|l| {
                AuditRow::from_export(l)
                    .unwrap_or_else(|| panic!("not an audit row of `gateway audit export`: {l}"))
            })
            .filter(|r| r.action == action)
            .collect()
    }
}

impl Drop for Ward {
    /// On a failure, keep every process's log (the temp dir goes) and say
    /// which processes were still running.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let keep = std::env::temp_dir().join(format!("ota-e2e-logs-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&keep);
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
                }
            }
        }
        for (name, child) in &mut self.devices {
            eprintln!("device process {name}: {:?}", child.0.try_wait());
        }
        if let Some(g) = self.gateway.as_mut() {
            eprintln!("gateway: {:?}", g.0.try_wait());
        }
        eprintln!("process logs kept in {}", keep.display());
    }
}

/// Log text without terminal colour sequences (`ESC [ ... m`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A state's count in a gateway campaign.
pub fn count(c: &Value, state: &str) -> u64 {
    c["counts"][state].as_u64().unwrap_or(0)
}

/// A device's entry `d` in a gateway campaign says it is healthy on
/// `version` and its result was reported to the OTA server.
pub fn healthy_on(d: &Value, version: &str) -> bool {
    d["state"] == "healthy" && d["reported"] == true && d["firmware_version"] == version
}

/// A device's entry in a gateway campaign.
pub fn device<'a>(c: &'a Value, id: &str) -> Option<&'a Value> {
    c["devices"]
        .as_array()?
        .iter()
        .find(|d| d["device_id"] == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_made_as_the_ota_server_makes_them() {
        let (token, hash) = new_token();
        let hex_part = token.strip_prefix("wgota_").unwrap();
        assert_eq!(hex::decode(hex_part).unwrap().len(), 32);
        assert_eq!(hash, crate::hash::sha256_hex(token.as_bytes()));
        assert_ne!(new_token().0, token);
    }

    #[test]
    fn audit_export_lines_parse_and_others_do_not() {
        let line = r#"{"id":7,"ts":"2025-01-02T03:04:05.678Z","actor":"device:pump-01","action":"ota.defer","subject":"pump-01","outcome":"refused","detail":"{\"reason\":\"therapy in progress\"}","prev_hash":"a","hash":"b"}"#;
        let row = AuditRow::from_export(line).unwrap();
        assert_eq!((row.id, row.action.as_str()), (7, "ota.defer"));
        assert_eq!(row.detail_json()["reason"], "therapy in progress");
        assert_eq!(row.ts.timestamp_subsec_millis(), 678);
        assert!(AuditRow::from_export("exported 3 audit rows").is_none());
        assert!(AuditRow::from_export(r#"{"id":"x"}"#).is_none());
    }
}
