//! Setting the ward up: keys, certificates, configuration, the central
//! side, the gateway and the devices, each through the product's own
//! command line as an operator would, and stopping all of it on drop.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use wardgate_tests::bins::Bins;
use wardgate_tests::mosquitto::{Mosquitto, Subscriber};
use wardgate_tests::ota::{campaign_request, OtaRepo, ServerSettings};
use wardgate_tests::ota_ward::new_token;
use wardgate_tests::pki::PkiDir;
use wardgate_tests::port::free_port;
use wardgate_tests::process::run_ok;
use wardgate_tests::process::{read_log, ChildGuard};

/// The ward around the pumps: monitors, oximeters, ventilators and the
/// compromised monitor (see the file's comments).
const SCENARIO: &str = include_str!("../../../../device-sim/scenarios/ward-demo.toml");
/// The device of [`SCENARIO`] that attacks.
pub const ATTACKER: &str = "monitor-07";
/// The gateway's id in its certificate for the OTA server.
const GATEWAY_ID: &str = "ward-3a";
/// The infusion pumps' hardware, as the manufacturer signs it.
const HARDWARE: &str = "pump-x1";
/// The manufacturer, as delegated in the TUF repository.
const MANUFACTURER: &str = "acme";
/// Number of infusion pumps taking the update.
pub const PUMPS: usize = 20;
/// The firmware the pumps run, and the release.
pub const OLD_VERSION: &str = "1.0.0";
pub const NEW_VERSION: &str = "2.0.0";
/// Size of the firmware image.
const IMAGE_LEN: usize = 1 << 20;
/// How long the pump in therapy stays in it after it boots.
const THERAPY: &str = "45s";

/// Every part of the running ward.
pub struct Ward {
    dir: PathBuf,
    /// The temporary folder, removed on drop (`None` with `--dir`).
    temp: Option<tempfile::TempDir>,
    bins: Bins,
    pub hospital: PkiDir,
    pub ward_http: reqwest::Client,
    pub hospital_http: reqwest::Client,
    pub admin_port: u16,
    edge_port: u16,
    ota_port: u16,
    pub viewer: String,
    ota_admin: String,
    manufacturer_token: String,
    pub upstream: Option<(Mosquitto, Subscriber)>,
    repo: Option<OtaRepo>,
    /// Devices whose story the demo tells.
    pub failing_pump: String,
    pub therapy_pump: String,
    pub campaign: String,
    processes: Vec<(String, ChildGuard)>,
}

type Result<T> = std::result::Result<T, String>;

fn step(text: &str) {
    println!("\n== {text}");
}

/// The firmware image: any bytes do; these are reproducible.
fn image() -> Vec<u8> {
    (0..IMAGE_LEN).map(|i| (i % 251) as u8 ^ 0x5a).collect()
}

pub fn pump(i: usize) -> String {
    format!("pump-{i:02}")
}

/// The OTA server's answer `r` if it created what was asked (201), else
/// the error naming `what` with the server's reason.
async fn created(r: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    if r.status() == 201 {
        Ok(r)
    } else {
        Err(format!(
            "the OTA server refused {what}: {}",
            r.text().await.unwrap_or_default()
        ))
    }
}

/// The arguments every `device-sim` run of the demo starts with: the
/// gateway's edge port `edge` and the ward PKI (run from the demo's dir).
fn device_sim_args(edge: &str) -> Vec<&str> {
    vec![
        "--port",
        edge,
        "--ca",
        "ward-pki/ca.pem",
        "--cert-dir",
        "ward-pki",
    ]
}

/// The OTA server orders a campaign's devices by SHA-256 of campaign,
/// gateway and device (`ota-server/src/campaign.rs`): the demo gives its
/// two special pumps places in the last wave, so that the canary (whose
/// failure would rightly halt the campaign) is an ordinary pump.
fn last_in_order(campaign: &str, n: usize) -> Vec<usize> {
    let mut order: Vec<(String, usize)> = (0..PUMPS)
        .map(|i| {
            let key = format!("{campaign}\n{GATEWAY_ID}\n{}", pump(i));
            (hex::encode(Sha256::digest(key)), i)
        })
        .collect();
    order.sort();
    order.iter().rev().take(n).map(|(_, i)| *i).collect()
}

impl Ward {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn console_url(&self) -> String {
        format!("https://127.0.0.1:{}/console", self.admin_port)
    }

    fn cmd(&self, bin: &str) -> Command {
        let mut c = self.bins.cmd(bin);
        c.current_dir(&self.dir);
        c
    }

    fn run(&self, bin: &str, args: &[&str]) -> Result<String> {
        run_ok(self.cmd(bin).args(args)).map_err(|e| e.to_string())
    }

    fn gateway(&self, args: &[&str]) -> Result<String> {
        let mut all = vec![args[0], "--config", "gateway.toml"];
        all.extend_from_slice(&args[1..]);
        self.run("gateway", &all)
    }

    fn spawn(&mut self, name: &str, bin: &str, args: &[&str]) -> Result<()> {
        let log = self.path(&format!("{name}.log"));
        let child = ChildGuard::spawn_logged(self.cmd(bin).args(args), &log)
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        self.processes.push((name.to_owned(), child));
        Ok(())
    }

    fn wait_port(&mut self, name: &str, port: u16) -> Result<()> {
        let log = self.path(&format!("{name}.log"));
        let (_, child) = self
            .processes
            .iter_mut()
            .rev()
            .find(|(n, _)| n == name)
            .ok_or_else(|| format!("{name} was not started"))?;
        child
            .wait_for_port(port, Duration::from_secs(60), name, || read_log(&log))
            .map_err(|e| e.to_string())
    }

    /// Everything up to a streaming ward with a campaign under way.
    pub async fn set_up(bins: &Path, dir: Option<&Path>, keep: bool) -> Result<Self> {
        let bins = Bins::at(bins).map_err(|e| {
            format!("{e}\n(scripts/demo builds them: cargo build --release --bins)")
        })?;
        let (temp, dir) = match dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
                (None, d.to_path_buf())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("wardgate-demo.")
                    .tempdir()
                    .map_err(|e| format!("cannot make a temporary folder: {e}"))?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        println!("work folder: {}", dir.display());
        let hospital = PkiDir::generate(&dir.join("hospital-pki"), "St. Demo Hospital CA")
            .map_err(|e| e.to_string())?;
        let hospital_ca = std::fs::read_to_string(&hospital.ca_path).map_err(|e| e.to_string())?;
        let (ota_admin, ota_admin_hash) = new_token();
        let (manufacturer_token, manufacturer_hash) = new_token();
        let mut w = Self {
            dir,
            temp,
            bins,
            hospital_http: wardgate_tests::https::client(&hospital_ca)
                .map_err(|e| e.to_string())?,
            ward_http: reqwest::Client::new(),
            hospital,
            admin_port: free_port().map_err(|e| e.to_string())?,
            edge_port: free_port().map_err(|e| e.to_string())?,
            ota_port: free_port().map_err(|e| e.to_string())?,
            viewer: String::new(),
            ota_admin,
            manufacturer_token,
            upstream: None,
            repo: None,
            failing_pump: String::new(),
            therapy_pump: String::new(),
            campaign: String::new(),
            processes: Vec::new(),
        };

        step("1. the firmware side: a TUF repository, the manufacturer's key, the OTA server");
        w.author_repository()?;
        w.start_ota_server(&ota_admin_hash, &manufacturer_hash)?;
        println!(
            "   ota-server on https://127.0.0.1:{} (mutual TLS; it never holds the manufacturer's key)",
            w.ota_port
        );

        step("2. the hospital broker");
        w.start_upstream().await;

        step("3. the ward: device CA, 50 device certificates, enrolment, the gateway");
        w.make_ward_pki()?;
        w.trust_ward_ca()?;
        w.write_gateway_config()?;
        w.enrol_devices()?;
        w.viewer = field(
            &w.gateway(&[
                "access",
                "token",
                "create",
                "--name",
                "demo.viewer",
                "--role",
                "viewer",
                "--expires-in",
                "1d",
            ])?,
            "secret:",
        )?;
        w.spawn("gateway", "gateway", &["run", "--config", "gateway.toml"])?;
        let admin = w.admin_port;
        w.wait_port("gateway", admin)?;
        println!("   edge on 127.0.0.1:{} (mutual TLS only)", w.edge_port);
        println!("   console: {}", w.console_url());
        println!("   viewer token: {}", w.viewer);

        step("4. 30 monitors, oximeters and ventilators stream their patients' vitals");
        std::fs::write(w.path("ward-demo.toml"), SCENARIO).map_err(|e| e.to_string())?;
        let edge = w.edge_port.to_string();
        let mut args = device_sim_args(&edge);
        args.extend(["--scenario", "ward-demo.toml"]);
        if keep {
            args.push("--repeat");
        }
        w.spawn("ward", "device-sim", &args)?;

        step("5. the manufacturer signs pump firmware 2.0.0; a campaign rolls it out in waves 1, 25%, 100%");
        let target = w.publish_release().await?;
        w.campaign = w.create_campaign(&target).await?;
        let special = last_in_order(&w.campaign, 2);
        w.failing_pump = pump(special[0]);
        w.therapy_pump = pump(special[1]);
        println!(
            "   campaign {}; {} has a unit whose new image fails its self-test; {} is giving a patient therapy for {THERAPY}",
            w.campaign, w.failing_pump, w.therapy_pump
        );
        w.start_pumps(&special)?;
        Ok(w)
    }

    fn author_repository(&mut self) -> Result<()> {
        let repo = OtaRepo::author(&self.dir, &self.bins.path("tuf-repo"), MANUFACTURER)
            .map_err(|e| e.to_string())?;
        println!("   root, targets, snapshot and timestamp keys; acme's own key, delegated acme/*");
        self.repo = Some(repo);
        Ok(())
    }

    fn repo(&self) -> Result<&OtaRepo> {
        self.repo
            .as_ref()
            .ok_or_else(|| "the TUF repository is not authored yet".to_owned())
    }

    fn start_ota_server(&mut self, admin_hash: &str, manufacturer_hash: &str) -> Result<()> {
        let listen = format!("127.0.0.1:{}", self.ota_port);
        let data_dir = self.path("ota-data");
        let config = self.repo()?.server_toml(&ServerSettings {
            listen: &listen,
            data_dir: &data_dir,
            cert: &self.hospital.server_cert,
            key: &self.hospital.server_key,
            client_ca: &self.hospital.ca_path,
            admin_token_sha256: admin_hash,
            manufacturer_token_sha256: manufacturer_hash,
        });
        std::fs::write(self.path("ota.toml"), config).map_err(|e| e.to_string())?;
        self.run(
            "ota-server",
            &["init", "--config", "ota.toml", "--from", "authoring"],
        )?;
        self.spawn(
            "ota-server",
            "ota-server",
            &["serve", "--config", "ota.toml"],
        )?;
        let port = self.ota_port;
        self.wait_port("ota-server", port)
    }

    async fn start_upstream(&mut self) {
        let started = async {
            let broker = Mosquitto::start_new(&self.hospital, &self.path("mosquitto"))
                .map_err(|e| e.to_string())?;
            let reader = self
                .hospital
                .client("hospital-reader")
                .map_err(|e| e.to_string())?;
            let sub = Subscriber::start_counting(
                &broker,
                &self.hospital,
                &reader,
                "hospital-reader",
                "wardgate/ward-3a/#",
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok::<_, String>((broker, sub))
        };
        match started.await {
            Ok((broker, sub)) => {
                println!(
                    "   Mosquitto on 127.0.0.1:{} (mutual TLS); a hospital reader counts what arrives",
                    broker.port
                );
                self.upstream = Some((broker, sub));
            }
            Err(e) => println!(
                "   no hospital broker ({e}); the uplink stays off. scripts/setup-test-deps installs Mosquitto."
            ),
        }
    }

    fn make_ward_pki(&self) -> Result<()> {
        self.run("gateway", &["pki", "--dir", "ward-pki", "init"])?;
        self.run(
            "gateway",
            &[
                "pki",
                "--dir",
                "ward-pki",
                "server",
                "--name",
                "localhost",
                "--name",
                "127.0.0.1",
            ],
        )?;
        for id in Self::device_ids()? {
            self.run(
                "gateway",
                &["pki", "--dir", "ward-pki", "device", "--id", &id],
            )?;
        }
        Ok(())
    }

    /// The scenario's devices, then the pumps.
    fn device_ids() -> Result<Vec<String>> {
        let mut ids: Vec<String> = scenario_devices()?.into_iter().map(|(id, _)| id).collect();
        ids.extend((0..PUMPS).map(pump));
        Ok(ids)
    }

    fn write_gateway_config(&mut self) -> Result<()> {
        let gw_cert = self
            .hospital
            .ca
            .issue_gateway(GATEWAY_ID, 30)
            .map_err(|e| e.to_string())?;
        let gw = self
            .hospital
            .write_files("gateway-client", &gw_cert)
            .map_err(|e| e.to_string())?;
        let image_port = free_port().map_err(|e| e.to_string())?;
        let mut config = format!(
            r#"[storage]
data_dir = "{dir}/gateway-data"

[edge]
listen = "127.0.0.1:{edge}"
ca_cert = "{dir}/ward-pki/ca.pem"
server_cert = "{dir}/ward-pki/server.pem"
server_key = "{dir}/ward-pki/server.key"

[admin]
bind = "127.0.0.1:{admin}"

[anomaly.response]
duplicate_session = "quarantine"
message_flood = "quarantine"

[ota]
server_url = "https://127.0.0.1:{ota}/"
trusted_root = "{root}"
ca_cert = "{hospital_ca}"
client_cert = "{gw_cert}"
client_key = "{gw_key}"
refresh_interval = "10s"
image_listen = "127.0.0.1:{image_port}"
assignments_interval = "500ms"
tick_interval = "250ms"
device_reoffer_after = "2s"
device_offer_timeout = "10s"
device_download_timeout = "30s"
device_install_timeout = "40s"
"#,
            dir = self.dir.display(),
            edge = self.edge_port,
            admin = self.admin_port,
            ota = self.ota_port,
            hospital_ca = self.hospital.ca_path.display(),
            root = self.repo()?.trusted_root().display(),
            gw_cert = gw.cert.display(),
            gw_key = gw.key.display(),
        );
        if let Some((broker, _)) = &self.upstream {
            let uplink = self
                .hospital
                .client(GATEWAY_ID)
                .map_err(|e| e.to_string())?;
            let _ = write!(
                config,
                r#"
[uplink]
enabled = true
broker_host = "localhost"
broker_port = {port}
client_id = "{GATEWAY_ID}"
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"
topic_prefix = "wardgate/ward-3a"
formats = ["json", "fhir"]
"#,
                port = broker.port,
                ca = self.hospital.ca_path.display(),
                cert = uplink.cert.display(),
                key = uplink.key.display(),
            );
        }
        std::fs::write(self.path("gateway.toml"), config).map_err(|e| e.to_string())
    }

    /// `gateway device enroll` of device `id` (a `model` of the demo's
    /// manufacturer for `hardware_id`, on `firmware`), pinning its
    /// certificate from the ward PKI.
    fn enrol_device(&self, id: &str, model: &str, hardware_id: &str, firmware: &str) -> Result<()> {
        let cert = format!("ward-pki/{id}.pem");
        self.gateway(&[
            "device",
            "enroll",
            "--id",
            id,
            "--model",
            model,
            "--hardware-id",
            hardware_id,
            "--manufacturer",
            MANUFACTURER,
            "--firmware",
            firmware,
            "--cert",
            &cert,
        ])?;
        Ok(())
    }

    fn enrol_devices(&self) -> Result<()> {
        for (id, model) in scenario_devices()? {
            let hardware_id = format!("{}-hw", model.to_lowercase());
            self.enrol_device(&id, model, &hardware_id, "4.2.0")?;
        }
        for i in 0..PUMPS {
            self.enrol_device(&pump(i), "Infusion pump X1", HARDWARE, OLD_VERSION)?;
        }
        println!("   50 devices enrolled with their certificate fingerprints pinned");
        Ok(())
    }

    async fn publish_release(&self) -> Result<String> {
        let img = image();
        let release = self
            .repo()?
            .release(
                &self.path("ota-data/repo/current"),
                "pump",
                NEW_VERSION,
                &img,
                HARDWARE,
            )
            .map_err(|e| e.to_string())?;
        let target = release.target.clone();
        let ota_url = format!("https://127.0.0.1:{}/", self.ota_port);
        let r = release
            .upload(&self.hospital_http, &ota_url, &self.manufacturer_token)
            .await
            .map_err(|e| format!("upload of {target}: {e}"))?;
        created(r, &target).await?;
        println!(
            "   {target} ({} KiB) signed with acme's key and accepted by the OTA server",
            img.len() / 1024
        );
        Ok(target)
    }

    async fn create_campaign(&self, target: &str) -> Result<String> {
        let waves = ["1", "25%", "100%"];
        let r = self
            .hospital_http
            .post(format!(
                "https://127.0.0.1:{}/api/v1/campaigns",
                self.ota_port
            ))
            .bearer_auth(&self.ota_admin)
            .json(&campaign_request(
                "pump firmware 2.0.0",
                target,
                &[GATEWAY_ID],
                &waves,
                10.0,
            ))
            .send()
            .await
            .map_err(|e| format!("campaign: {e}"))?;
        let r = created(r, "the campaign").await?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("campaign without id: {v}"))
    }

    /// The pumps in contiguous runs per process, the two special ones each
    /// in their own with their fault switch.
    fn start_pumps(&mut self, special: &[usize]) -> Result<()> {
        let mut runs: Vec<(usize, usize, Vec<String>)> = Vec::new();
        let mut i = 0;
        while i < PUMPS {
            if special.contains(&i) {
                let fault = if pump(i) == self.failing_pump {
                    format!("self-test-fails={NEW_VERSION}")
                } else {
                    format!("therapy-for={THERAPY}")
                };
                runs.push((i, 1, vec![fault]));
                i += 1;
                continue;
            }
            let start = i;
            while i < PUMPS && !special.contains(&i) {
                i += 1;
            }
            runs.push((start, i - start, Vec::new()));
        }
        let edge = self.edge_port.to_string();
        let key = self.repo()?.manufacturer_public_key().display().to_string();
        for (first, n, faults) in runs {
            let (first_s, n_s) = (first.to_string(), n.to_string());
            let mut args = device_sim_args(&edge);
            args.extend([
                "--prefix",
                "pump",
                "--first",
                &first_s,
                "--devices",
                &n_s,
                "--interval",
                "2s",
                "--state-dir",
                "nvram",
                "--hardware-id",
                HARDWARE,
                "--firmware",
                OLD_VERSION,
                "--manufacturer-key",
                &key,
                "--health-window",
                "15s",
            ]);
            for f in &faults {
                args.push("--fault");
                args.push(f);
            }
            self.spawn(&format!("pumps-{first:02}"), "device-sim", &args)?;
        }
        println!("   20 infusion pumps on firmware {OLD_VERSION} connected, each with A/B slots");
        Ok(())
    }

    /// `GET` on the admin API as the viewer.
    pub async fn admin_get(&self, path: &str) -> Result<Value> {
        let r = self
            .ward_http
            .get(format!("https://127.0.0.1:{}{path}", self.admin_port))
            .bearer_auth(&self.viewer)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{path}: {}", r.status()));
        }
        r.json().await.map_err(|e| format!("{path}: {e}"))
    }

    /// The `gateway` command line on this ward's config.
    pub fn gateway_cli(&self, args: &[&str]) -> Result<String> {
        self.gateway(args)
    }

    /// Keep the work folder (with the logs) after the demo ends.
    pub fn keep_logs(&mut self) {
        if let Some(t) = self.temp.take() {
            let _ = t.keep();
        }
    }

    /// Set the admin client up once the ward CA exists.
    pub fn trust_ward_ca(&mut self) -> Result<()> {
        let ca =
            std::fs::read_to_string(self.path("ward-pki/ca.pem")).map_err(|e| e.to_string())?;
        self.ward_http = wardgate_tests::https::client(&ca).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The devices of [`SCENARIO`] (`<prefix>-<i>`, two digits, as
/// `device-sim --scenario` names them) and the model each is enrolled as.
fn scenario_devices() -> Result<Vec<(String, &'static str)>> {
    let scenario: toml::Value =
        toml::from_str(SCENARIO).map_err(|e| format!("ward-demo.toml: {e}"))?;
    let groups = scenario
        .get("devices")
        .and_then(toml::Value::as_array)
        .ok_or("ward-demo.toml has no [[devices]]")?;
    let mut out = Vec::new();
    for g in groups {
        let (Some(kind), Some(prefix), Some(count)) = (
            g.get("kind").and_then(toml::Value::as_str),
            g.get("prefix").and_then(toml::Value::as_str),
            g.get("count").and_then(toml::Value::as_integer),
        ) else {
            return Err(format!(
                "ward-demo.toml: a device group lacks kind, prefix or count: {g}"
            ));
        };
        let model = match kind {
            "patient_monitor" => "PM-100",
            "pulse_oximeter" => "OX-20",
            "ventilator" => "VT-300",
            "infusion_pump" => "IP-50",
            other => return Err(format!("ward-demo.toml: unknown device kind {other}")),
        };
        for i in 0..count {
            out.push((format!("{prefix}-{i:02}"), model));
        }
    }
    Ok(out)
}

/// The value after `label` on a line of a command's output.
fn field(out: &str, label: &str) -> Result<String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| format!("no {label:?} in {out}"))
}

impl Drop for Ward {
    /// Stop the devices first, then the gateway and the central side.
    fn drop(&mut self) {
        while let Some((_, mut child)) = self.processes.pop() {
            let _ = child.terminate(Duration::from_secs(5));
        }
    }
}
