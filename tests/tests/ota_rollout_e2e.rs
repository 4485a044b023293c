//! One ward's firmware rollout with the real processes, over real TLS
//! sockets: `tuf-repo` (the operator's repository and the manufacturer's
//! signed release), `ota-server serve` (mutual TLS), `gateway run` with an
//! `[ota]` section, and `device-sim` processes with A/B slots in their
//! state folders.
//!
//! One ward, two campaigns, shown in order:
//! 1. `acme/pump-2.0.0.bin`, waves `["1", "25%", "100%"]`, 20 devices (18
//!    in one `device-sim` process, one that loses power mid-download, one in
//!    therapy): every device ends on 2.0.0 wave by wave, visible in
//!    `GET /api/v1/ota/status` and in the server's campaign; the gateway is
//!    killed with `kill -9` mid-campaign and restarted, and no device is
//!    updated twice; the OTA server sent one image while the gateway's
//!    image server sent twenty.
//! 2. `acme/pump-3.0.0.bin`, whose self-test fails on every device: the
//!    canary rolls back to 2.0.0 and reports it, the campaign halts, and no
//!    other device is ever offered 3.0.0; an operator's retry is refused
//!    while the campaign is halted.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wardgate_protocol::DeviceId;
use wardgate_tests::bins::Bins;
use wardgate_tests::ota::{run_ok, GatewaySettings, OtaRepo, ServerSettings};
use wardgate_tests::pki::PkiDir;
use wardgate_tests::port::free_port;
use wardgate_tests::process::{read_log, ChildGuard};
use wardgate_tests::wait::wait_for_async;

const HW: &str = "pump-x1";
const GATEWAY_ID: &str = "ward-3a";
const DEVICES: usize = 20;
/// The device that loses power mid-download, and the one in therapy.
const POWER_LOSS: usize = 19;
const THERAPY: usize = 20;
const IMAGE_LEN: usize = 256 * 1024;
/// Where the power-loss device's download stops.
const POWER_LOSS_AT: usize = 100_000;

/// Run a command to completion; its stdout, or a panic with its output.
fn ok(cmd: &mut Command) -> String {
    run_ok(cmd).unwrap_or_else(|e| panic!("{e}"))
}

fn field(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label:?} in {out}"))
}

fn image(seed: u8) -> Vec<u8> {
    (0..IMAGE_LEN).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn device_id(i: usize) -> String {
    format!("pump-{i:02}")
}

/// Sum of the metric lines starting with `prefix` in Prometheus text.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Ward {
    dir: tempfile::TempDir,
    pki: PkiDir,
    repo: OtaRepo,
    http: reqwest::Client,
    ota_port: u16,
    admin_token: String,
    acme_token: String,
    ota_data: PathBuf,
    gateway_config: PathBuf,
    admin_port: u16,
    viewer: String,
    operator: String,
    ota_server: Option<ChildGuard>,
    gateway: Option<ChildGuard>,
    devices: Vec<(String, ChildGuard)>,
}

impl Ward {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The operator authors the repository with `tuf-repo` and the OTA
    /// server imports it; the gateway gets its PKI and configuration; the
    /// devices are enrolled with `gateway device enroll`.
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::generate(&dir.path().join("pki"), "Ward 3A CA").unwrap();
        let ca_pem = std::fs::read_to_string(&pki.ca_path).unwrap();
        let http = wardgate_tests::https::client(&ca_pem).unwrap();
        let (admin_token, admin_hash) = ota_server::auth::new_token();
        let (acme_token, acme_hash) = ota_server::auth::new_token();
        let repo = OtaRepo::author(dir.path(), &Bins::for_tests().path("tuf-repo"), "acme")
            .unwrap_or_else(|e| panic!("author the repository: {e}"));
        let mut w = Self {
            repo,
            ota_data: dir.path().join("ota-data"),
            gateway_config: dir.path().join("gateway.toml"),
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
        let ota_listen = format!("127.0.0.1:{}", w.ota_port);
        let ota_toml = w.repo.server_toml(&ServerSettings {
            listen: &ota_listen,
            data_dir: &w.ota_data,
            cert: &w.pki.server_cert,
            key: &w.pki.server_key,
            client_ca: &w.pki.ca_path,
            admin_token_sha256: &admin_hash,
            manufacturer_token_sha256: &acme_hash,
        });
        std::fs::write(w.path("ota.toml"), ota_toml).unwrap();
        ok(Bins::for_tests()
            .cmd("ota-server")
            .args(["init", "--config"])
            .arg(w.path("ota.toml"))
            .arg("--from")
            .arg(w.repo.authoring()));

        // The gateway: client certificate for the OTA server, config, devices.
        let gw = w.pki.ca.issue_gateway(GATEWAY_ID, 30).unwrap();
        let gw_files = w.pki.write_files("gateway-client", &gw).unwrap();
        let edge_port = free_port().unwrap();
        let image_port = free_port().unwrap();
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

{ota}"#,
            data = w.path("gateway-data").display(),
            ca = w.pki.ca_path.display(),
            cert = w.pki.server_cert.display(),
            key = w.pki.server_key.display(),
            admin_port = w.admin_port,
            ota = w.repo.gateway_section(&GatewaySettings {
                server_url: &w.ota_url(),
                ca_cert: &w.pki.ca_path,
                client_cert: &gw_files.cert,
                client_key: &gw_files.key,
                image_listen: &format!("127.0.0.1:{image_port}"),
            }),
        );
        std::fs::write(&w.gateway_config, config).unwrap();
        for i in 1..=DEVICES {
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

    fn start_ota_server(&mut self) {
        let log = self.path("ota-server.log");
        let mut child = ChildGuard::spawn_logged(
            Bins::for_tests()
                .cmd("ota-server")
                .args(["serve", "--config"])
                .arg(self.path("ota.toml")),
            &log,
        )
        .unwrap();
        child
            .wait_for_port(self.ota_port, Duration::from_secs(30), "ota-server", || {
                read_log(&log)
            })
            .unwrap();
        self.ota_server = Some(child);
    }

    fn start_gateway(&mut self) {
        let log = self.path("gateway.log");
        let mut child = ChildGuard::spawn_logged(
            Bins::for_tests()
                .cmd("gateway")
                .args(["run", "--config"])
                .arg(&self.gateway_config),
            &log,
        )
        .unwrap();
        // The admin API starts last, after the OTA agent and its image server.
        child
            .wait_for_port(self.admin_port, Duration::from_secs(30), "gateway", || {
                read_log(&log)
            })
            .unwrap();
        self.gateway = Some(child);
    }

    /// `device-sim` running devices `first..first+n` with `faults`.
    fn start_devices(&mut self, name: &str, first: usize, n: usize, faults: &[&str]) {
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
            .arg(self.repo.manufacturer_public_key())
            .args(["--health-window", "5s"]);
        for f in faults {
            cmd.args(["--fault", f]);
        }
        let child = ChildGuard::spawn_logged(&mut cmd, &log).unwrap();
        self.devices.push((name.to_owned(), child));
    }

    fn device_process(&mut self, name: &str) -> &mut ChildGuard {
        &mut self
            .devices
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("device process")
            .1
    }

    fn edge_port(&self) -> u16 {
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

    /// The manufacturer signs `version` with `tuf-repo release` against the
    /// server's current repository and uploads it.
    async fn publish(&self, version: &str, img: &[u8]) -> String {
        let release = self
            .repo
            .release(
                &self.ota_data.join("repo/current"),
                "pump",
                version,
                img,
                HW,
            )
            .unwrap();
        let r = self
            .http
            .post(format!("{}{}", self.ota_url(), release.upload_path()))
            .header(
                "X-Wardgate-Metadata-Length",
                release.metadata_len.to_string(),
            )
            .bearer_auth(&self.acme_token)
            .body(release.body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "upload {}: {}",
            release.target,
            r.text().await.unwrap()
        );
        release.target
    }

    fn ota_url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.ota_port)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.admin_port)
    }

    async fn campaign(&self, target: &str, threshold: f64) -> String {
        let r = self
            .http
            .post(format!("{}api/v1/campaigns", self.ota_url()))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({
                "name": target,
                "target": target,
                "gateways": [GATEWAY_ID],
                "waves": ["1", "25%", "100%"],
                "failure_threshold_percent": threshold,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    async fn server_campaign(&self, id: &str) -> Value {
        self.http
            .get(format!("{}api/v1/campaigns/{id}", self.ota_url()))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The OTA server's image bytes sent, once it stops changing.
    async fn ota_sent_bytes(&self) -> f64 {
        let read = || async {
            let text = self
                .http
                .get(format!("{}metrics", self.ota_url()))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            metric(&text, "wardgate_ota_target_sent_bytes_total")
        };
        let mut last = read().await;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = read().await;
            if (now - last).abs() < f64::EPSILON {
                return now;
            }
            last = now;
        }
    }

    /// `GET /api/v1/ota/status` (viewer), or `None` while the gateway is
    /// not answering.
    async fn status(&self) -> Option<Value> {
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

    async fn gateway_metrics(&self) -> String {
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
    async fn gateway_campaign(&self, id: &str) -> Option<Value> {
        let s = self.status().await?;
        s["campaigns"]
            .as_array()?
            .iter()
            .find(|c| c["campaign_id"] == id)
            .cloned()
    }

    async fn wait_campaign(
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

    /// Audit rows of the gateway database, oldest first.
    fn audit(&self, action: &str) -> Vec<gateway::audit::AuditRecord> {
        let log =
            gateway::audit::AuditLog::open(&self.path("gateway-data").join("gateway.db")).unwrap();
        log.all()
            .unwrap()
            .into_iter()
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
fn strip_ansi(text: &str) -> String {
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

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn count(c: &Value, state: &str) -> u64 {
    c["counts"][state].as_u64().unwrap_or(0)
}

fn device<'a>(c: &'a Value, id: &str) -> Option<&'a Value> {
    c["devices"]
        .as_array()?
        .iter()
        .find(|d| d["device_id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ward_rolls_out_wave_by_wave_through_crashes_and_halts_on_a_failed_canary() {
    let mut w = Ward::new().await;
    let v2 = image(2);
    let target2 = w.publish("2.0.0", &v2).await;

    // 18 devices in one process; the power-loss device alone (it is
    // killed); the therapy device starts once it is assigned, so that its
    // therapy is under way when its wave comes.
    w.start_devices("fleet", 1, 18, &["self-test-fails=3.0.0"]);
    let power_fault = format!("power-loss-after={POWER_LOSS_AT}");
    w.start_devices("power-loss", POWER_LOSS, 1, &[&power_fault]);
    let campaign = w.campaign(&target2, 10.0).await;

    // Whatever their waves: the therapy pump starts once it is assigned, and
    // the power-loss pump, whose process ends by itself when power is lost
    // mid-download (as with `kill -9`, nothing more is written), is started
    // again on the same NVRAM.
    let therapy_id = device_id(THERAPY);
    let (mut therapy_started, mut power_restored) = (false, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !(therapy_started && power_restored) {
        assert!(
            std::time::Instant::now() < deadline,
            "therapy pump started: {therapy_started}, power-loss pump restarted: {power_restored}\n{}",
            tail(&read_log(&w.path("power-loss.log")), 20)
        );
        if !therapy_started
            && w.gateway_campaign(&campaign)
                .await
                .is_some_and(|c| device(&c, &therapy_id).is_some())
        {
            w.start_devices(
                "therapy",
                THERAPY,
                1,
                &["therapy-for=6s", "self-test-fails=3.0.0"],
            );
            therapy_started = true;
        }
        if !power_restored && !w.device_process("power-loss").is_running() {
            let code = w.device_process("power-loss").0.wait().unwrap().code();
            assert_eq!(code, Some(137), "a power loss ends the process as kill -9");
            w.devices.retain(|(n, _)| n != "power-loss");
            w.start_devices(
                "power-loss-again",
                POWER_LOSS,
                1,
                &["self-test-fails=3.0.0"],
            );
            power_restored = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Mid-campaign (canary done, later waves under way): kill -9 the
    // gateway and start it again on the same data dir.
    w.wait_campaign(
        &campaign,
        Duration::from_secs(120),
        "two devices healthy",
        |c| count(c, "healthy") >= 2,
    )
    .await;
    let last_row_before = w
        .audit("ota.offer")
        .last()
        .map(|r| r.id)
        .unwrap_or_default();
    let healthy_before: Vec<String> = w.gateway_campaign(&campaign).await.unwrap()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["state"] == "healthy")
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect();
    w.gateway.as_mut().unwrap().kill9();
    w.gateway = None;
    w.start_gateway();

    let done = w
        .wait_campaign(
            &campaign,
            Duration::from_secs(150),
            "every device healthy and reported",
            |c| {
                c["devices"].as_array().is_some_and(|d| {
                    d.len() == DEVICES
                        && d.iter()
                            .all(|d| d["state"] == "healthy" && d["reported"] == true)
                })
            },
        )
        .await;

    // Wave by wave: 1, then 25% (5 in all), then the rest; the gateway and
    // the server agree.
    let per_wave = |c: &Value, wave: u64| {
        c["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["wave"] == wave)
            .count()
    };
    assert_eq!(
        (per_wave(&done, 0), per_wave(&done, 1), per_wave(&done, 2)),
        (1, 4, 15),
        "{done:#}"
    );
    for d in done["devices"].as_array().unwrap() {
        assert_eq!(d["firmware_version"], "2.0.0", "{d}");
    }
    let st = w.server_campaign(&campaign).await;
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["totals"]["success"], DEVICES, "{st}");
    for (wave, n) in [(0usize, 1u64), (1, 4), (2, 15)] {
        assert_eq!(st["per_wave"][wave]["assigned"], n, "{st}");
    }
    // No device of a wave was offered anything before every device of the
    // waves before it had its result.
    let offers = w.audit("ota.offer");
    let results: Vec<_> = w
        .audit("ota.result")
        .into_iter()
        .filter(|r| r.detail_json()["campaign_id"] == campaign.as_str())
        .collect();
    let wave_of = |id: &str| device(&done, id).and_then(|d| d["wave"].as_u64());
    for wave in 1..=2u64 {
        let last_result_before = results
            .iter()
            .filter(|r| wave_of(&r.subject).is_some_and(|x| x < wave))
            .map(|r| r.id)
            .max()
            .unwrap();
        let first_offer = offers
            .iter()
            .filter(|r| wave_of(&r.subject) == Some(wave))
            .map(|r| r.id)
            .min()
            .unwrap();
        assert!(
            first_offer > last_result_before,
            "wave {wave} was offered before the previous waves were done"
        );
    }
    // After the gateway's restart: one result per device, and nobody healthy
    // before the restart was offered the image again.
    for i in 1..=DEVICES {
        let id = device_id(i);
        let n = results.iter().filter(|r| r.subject == id).count();
        assert_eq!(n, 1, "{id} finished {n} times");
    }
    for id in &healthy_before {
        assert!(
            !offers
                .iter()
                .any(|r| &r.subject == id && r.id > last_row_before),
            "{id} was healthy before the restart and offered again after it"
        );
    }
    // The therapy pump was deferred, then updated once idle.
    assert!(
        w.audit("ota.defer").iter().any(|r| r.subject == therapy_id),
        "the therapy pump was never deferred"
    );
    // The power-loss pump resumed its download (HTTP Range) from the bytes
    // its slot already held, and completed it.
    let log19 = strip_ansi(&read_log(&w.path("power-loss-again.log")));
    let resumed_at: Vec<u64> = log19
        .lines()
        .filter(|l| l.contains("downloading firmware"))
        .filter_map(|l| {
            l.split("resume_at=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        resumed_at.first().is_some_and(|&b| b > 0),
        "the power-loss pump did not resume its download: {}",
        tail(&log19, 30)
    );
    // Central egress: one image from the OTA server; the devices, which
    // reach only the gateway, received twenty between them. Counted by the
    // devices, because the gateway's own counter restarted with it and
    // whatever it served between a scrape and the kill would be lost. The
    // power-loss pump's first process died before logging the bytes it had.
    assert_eq!(
        w.ota_sent_bytes().await,
        v2.len() as f64,
        "ota-server sent one copy"
    );
    let received: u64 = ["fleet", "power-loss-again", "therapy"]
        .iter()
        .map(|name| strip_ansi(&read_log(&w.path(&format!("{name}.log")))))
        .flat_map(|log| {
            log.lines()
                .filter(|l| l.contains("firmware downloaded") && l.contains("version=2.0.0"))
                .filter_map(|l| {
                    l.split("received=")
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .collect::<Vec<_>>()
        })
        .sum();
    assert!(
        received >= (DEVICES * v2.len() - POWER_LOSS_AT) as u64,
        "the devices received {received} bytes from the gateway, less than {DEVICES} images"
    );
    let after = w.gateway_metrics().await;
    assert!(
        metric(&after, "wardgate_ota_image_bytes_served_total") > 0.0,
        "the restarted gateway served nothing"
    );

    // Campaign 2: the image fails its self-test everywhere. The canary rolls
    // back and reports; the campaign halts; nobody else is offered it.
    let v3 = image(3);
    let target3 = w.publish("3.0.0", &v3).await;
    let campaign3 = w.campaign(&target3, 0.0).await;
    let halted = wait_for_async(Duration::from_secs(90), || async {
        let st = w.server_campaign(&campaign3).await;
        (st["state"] == "halted").then_some(st)
    })
    .await;
    let st3 = halted.unwrap_or_else(|| {
        panic!(
            "campaign 2 never halted\n--- gateway log tail ---\n{}",
            tail(&read_log(&w.path("gateway.log")), 40)
        )
    });
    assert_eq!(st3["totals"]["failure"], 1, "{st3}");
    let c3 = w
        .wait_campaign(
            &campaign3,
            Duration::from_secs(30),
            "the rollback reported",
            |c| {
                count(c, "rolled_back") == 1
                    && c["devices"].as_array().is_some_and(|d| {
                        d.iter()
                            .any(|d| d["state"] == "rolled_back" && d["reported"] == true)
                    })
            },
        )
        .await;
    let canary = c3["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["state"] == "rolled_back")
        .unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A few more rounds with the server: still only the canary was offered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let offered3: std::collections::BTreeSet<String> = w
        .audit("ota.offer")
        .into_iter()
        .filter(|r| r.detail_json()["campaign_id"] == campaign3.as_str())
        .map(|r| r.subject)
        .collect();
    assert_eq!(
        offered3.into_iter().collect::<Vec<_>>(),
        vec![canary.clone()],
        "only the canary was offered 3.0.0"
    );
    let rolled = w
        .audit("ota.result")
        .into_iter()
        .find(|r| r.detail_json()["campaign_id"] == campaign3.as_str())
        .expect("the rollback is audited");
    assert_eq!(rolled.subject, canary);
    assert_eq!(rolled.detail_json()["state"], "rolled_back");
    // The canary runs the previous slot again.
    let back = w
        .wait_campaign(
            &campaign3,
            Duration::from_secs(20),
            "the canary back on 2.0.0",
            |c| device(c, &canary).is_some_and(|d| d["firmware_version"] == "2.0.0"),
        )
        .await;
    assert_eq!(count(&back, "rolled_back"), 1);

    // An operator's retry is refused while the campaign is halted; a viewer
    // may not retry at all.
    let url = w.admin_url(&format!("/api/v1/ota/devices/{canary}/retry"));
    let r = w
        .http
        .post(&url)
        .bearer_auth(&w.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "{}", r.text().await.unwrap());
    let r = w
        .http
        .post(&url)
        .bearer_auth(&w.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // `gateway ota status` reads the same progress beside the running gateway.
    let out = ok(Bins::for_tests()
        .cmd("gateway")
        .args(["ota", "status", "--config"])
        .arg(&w.gateway_config));
    assert!(
        out.contains(&campaign3) && out.contains("rolled_back"),
        "{out}"
    );
}
