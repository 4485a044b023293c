//! Network segmentation across three hosts: the device network and
//! hospital IT stay apart, and the gateway is the only thing between them.
//!
//! Three Linux network namespaces joined by veth pairs (`ip netns`,
//! Debian's `iproute2`), each running the real binaries through
//! `ip netns exec`:
//!
//! | host | networks | runs |
//! | --- | --- | --- |
//! | device | device (`10.71.1.2`), default route via the gateway | `device-sim`, and a listener used to prove it cannot be reached |
//! | gateway | device (`10.71.1.1`), hospital (`10.71.2.1`), management (`10.71.3.1`) | `gateway run` (edge and OTA image server on the device side, admin API on the management address, embedded broker with no listener, OTA agent fetching from the hospital side) |
//! | hospital | hospital (`10.71.2.2`), management (`10.71.3.2`), default route via the gateway | Mosquitto (the upstream broker), `ota-server` |
//!
//! Checked, each on its own: telemetry from the device host reaches the
//! hospital broker through the edge and the uplink; a firmware update
//! reaches a device on the device host once the rollout exists (a release
//! signed with `tuf-repo` and uploaded to the hospital's `ota-server`, a
//! campaign created there, the gateway's OTA agent stages the image and
//! serves it on the device-side address, and the device, a `device-sim`
//! with A/B slots, ends on the new version, as `GET /api/v1/ota/status`
//! from the management network shows); from the device host
//! the hospital host (broker and OTA server), the admin API, the embedded
//! broker's ports and the gateway's management address cannot be reached;
//! from the hospital host the device host cannot be reached. Every "cannot"
//! has its positive control (the same port reached from the side that
//! should reach it), so a check cannot pass because a server is down.
//! First with the binds alone (the admin API and the broker refuse on the
//! device-side address; nothing is forwarded), then with the shipped host
//! firewall `deploy/nftables/wardgate.nft`, which also keeps devices off
//! the management address (Linux answers for any local address on any
//! interface).
//!
//! Needs root, `ip`, `nft`, `curl`, Mosquitto and the workspace binaries
//! (built here when missing or stale, see [`Bins`]; `.ci/run` runs this as
//! root). Without root or the tools it is skipped with a message saying
//! what is missing (and fails instead under CI, where `CI` is set).
//! Namespaces are named per run and removed on drop, also when an
//! assertion fails or the topology is only half built; every process in
//! them is killed first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use wardgate_protocol::DeviceId;
use wardgate_tests::bins::Bins;
use wardgate_tests::ota::{run_ok, GatewaySettings, OtaRepo, Release, ServerSettings};
use wardgate_tests::pki::{Ca, ClientIdentity};
use wardgate_tests::process::{assert_success, read_log, ChildGuard, Stream};
use wardgate_tests::wait::wait_blocking;

const DEVICE_GW: &str = "10.71.1.1";
const DEVICE_HOST: &str = "10.71.1.2";
const HOSPITAL_GW: &str = "10.71.2.1";
const HOSPITAL_HOST: &str = "10.71.2.2";
const MGMT_GW: &str = "10.71.3.1";
const MGMT_HOSPITAL: &str = "10.71.3.2";
const EDGE_PORT: u16 = 8883;
const ADMIN_PORT: u16 = 8443;
const UPSTREAM_PORT: u16 = 8883;
const OTA_PORT: u16 = 9443;
/// The image server's port: the shipped firewall's `image_port`.
const IMAGE_PORT: u16 = 8444;
const GATEWAY_ID: &str = "ward-7";
const HARDWARE_ID: &str = "acme-m1";
const DEVICE_LISTENER_PORT: u16 = 8080;
const READY: Duration = Duration::from_secs(60);
/// `device-sim --devices 1 --prefix monitor` numbers its device from 00.
const DEVICE: &str = "monitor-00";

/// Why the test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some(
            "not running as root (network namespaces need it; .ci/run runs as root)".into(),
        );
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("mosquitto_sub", "mosquitto-clients"),
        ("curl", "curl"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "`{tool}` not found; install Debian's {package} (scripts/setup-test-deps does)"
            ));
        }
    }
    if !Path::new(wardgate_tests::mosquitto::MOSQUITTO).exists() {
        return Some("mosquitto not installed; run scripts/setup-test-deps".into());
    }
    let probe = Command::new("ip")
        .args(["netns", "add", &format!("wgprobe{}", std::process::id())])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Some("`ip netns add` failed (no CAP_SYS_ADMIN in this container?)".into());
    }
    let _ = Command::new("ip")
        .args(["netns", "del", &format!("wgprobe{}", std::process::id())])
        .status();
    None
}

/// A workspace binary, built first if missing or stale.
fn binary(name: &str) -> PathBuf {
    Bins::for_tests().path(name)
}

fn run_ip(args: &[&str]) {
    assert_success(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    );
}

/// The three hosts; removed on drop.
struct Topology {
    device: String,
    gateway: String,
    hospital: String,
}

impl Topology {
    fn create() -> Self {
        // Unique per run: parallel runs and leftovers of a killed run never clash.
        let tag = format!(
            "{:x}",
            (std::process::id() ^ (chrono::Utc::now().timestamp_subsec_nanos() >> 8)) & 0xff_ffff
        );
        // Built before anything is created, so that a failure half-way
        // still removes what was made (drop ignores what is not there).
        let t = Self {
            device: format!("wgdev-{tag}"),
            gateway: format!("wggw-{tag}"),
            hospital: format!("wghosp-{tag}"),
        };
        for ns in [&t.device, &t.gateway, &t.hospital] {
            run_ip(&["netns", "add", ns]);
            run_ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // (pair name on the gateway, on the peer, peer namespace, gateway address, peer address)
        let links = [
            (
                format!("wgd{tag}"),
                format!("wgd{tag}p"),
                &t.device,
                DEVICE_GW,
                DEVICE_HOST,
            ),
            (
                format!("wgh{tag}"),
                format!("wgh{tag}p"),
                &t.hospital,
                HOSPITAL_GW,
                HOSPITAL_HOST,
            ),
            (
                format!("wgm{tag}"),
                format!("wgm{tag}p"),
                &t.hospital,
                MGMT_GW,
                MGMT_HOSPITAL,
            ),
        ];
        for (gw_if, peer_if, peer_ns, gw_addr, peer_addr) in &links {
            run_ip(&[
                "link", "add", gw_if, "netns", &t.gateway, "type", "veth", "peer", "name", peer_if,
                "netns", peer_ns,
            ]);
            run_ip(&[
                "-n",
                &t.gateway,
                "addr",
                "add",
                &format!("{gw_addr}/24"),
                "dev",
                gw_if,
            ]);
            run_ip(&["-n", &t.gateway, "link", "set", gw_if, "up"]);
            run_ip(&[
                "-n",
                peer_ns,
                "addr",
                "add",
                &format!("{peer_addr}/24"),
                "dev",
                peer_if,
            ]);
            run_ip(&["-n", peer_ns, "link", "set", peer_if, "up"]);
        }
        // Both ends route everything through the gateway, as a compromised
        // host would: only the gateway's refusal to forward keeps them apart.
        run_ip(&["-n", &t.device, "route", "add", "default", "via", DEVICE_GW]);
        run_ip(&[
            "-n",
            &t.hospital,
            "route",
            "add",
            "default",
            "via",
            HOSPITAL_GW,
        ]);
        t
    }

    fn device_if(&self) -> String {
        format!("wgd{}", &self.device["wgdev-".len()..])
    }

    /// `ip netns exec <ns> <program> ...`
    fn exec(ns: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it (and their peers).
        for ns in [&self.device, &self.gateway, &self.hospital] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

const PROBE: &str = r#"
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("unreachable:%s" % e.errno)
"#;

fn python() -> PathBuf {
    wardgate_tests::python::python().unwrap_or_else(|_| PathBuf::from("python3"))
}

/// What a TCP connect from `ns` to `host:port` gets: `open`, `refused`,
/// `timeout` or `unreachable:<errno>`.
fn probe(ns: &str, host: &str, port: u16, wait: &str) -> String {
    let out = Topology::exec(ns, &python())
        .args(["-c", PROBE, host, &port.to_string(), wait])
        .output()
        .expect("run the probe");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn assert_open(ns: &str, host: &str, port: u16, what: &str) {
    let got = probe(ns, host, port, "3");
    assert_eq!(
        got, "open",
        "{what}: {host}:{port} from {ns} should be reachable"
    );
}

fn assert_closed(ns: &str, host: &str, port: u16, what: &str) {
    let got = probe(ns, host, port, "1.5");
    assert_ne!(
        got, "open",
        "{what}: {host}:{port} must not be reachable from {ns}"
    );
    assert!(
        !got.is_empty(),
        "{what}: the probe from {ns} printed nothing"
    );
}

fn wait_open(ns: &str, host: &str, port: u16, what: &str, log: impl Fn() -> String) {
    let up = wait_blocking(READY, || probe(ns, host, port, "1") == "open");
    assert!(
        up,
        "{what} did not listen on {host}:{port} in {ns}:\n{}",
        log()
    );
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).expect("write file");
    path.to_path_buf()
}

/// The hospital's PKI and the ward's, as files.
struct Pki {
    ward_ca: PathBuf,
    edge_cert: PathBuf,
    edge_key: PathBuf,
    device_dir: PathBuf,
    hospital_ca: PathBuf,
    upstream: ClientIdentity,
    uplink: ClientIdentity,
    consumer: ClientIdentity,
    ota_server: ClientIdentity,
    /// The admin API's server certificate, for the management address.
    admin: ClientIdentity,
    /// The gateway's client certificate for the OTA server.
    ota_client: ClientIdentity,
}

fn pki(dir: &Path) -> Pki {
    let ward = Ca::generate("Ward 7 device CA", 30).expect("ward CA");
    let ward_dir = dir.join("ward");
    let device_dir = dir.join("devices");
    let hospital_dir = dir.join("hospital");
    for d in [&ward_dir, &device_dir, &hospital_dir] {
        std::fs::create_dir_all(d).expect("pki dir");
    }
    let (ward_ca, _) = ward.write(&ward_dir).expect("write ward CA");
    let (edge_cert, edge_key) = (ward_dir.join("edge.pem"), ward_dir.join("edge.key"));
    ward.issue_server(&[DEVICE_GW.to_owned()], 30)
        .expect("edge cert")
        .write(&edge_cert, &edge_key)
        .expect("write edge cert");
    let id = DeviceId::parse(DEVICE).expect("device id");
    ward.issue_device(&id, 30)
        .expect("device cert")
        .write(
            &device_dir.join(format!("{DEVICE}.pem")),
            &device_dir.join(format!("{DEVICE}.key")),
        )
        .expect("write device cert");
    let ota_client = ClientIdentity {
        cert: ward_dir.join("gateway-ota.pem"),
        key: ward_dir.join("gateway-ota.key"),
    };
    ward.issue_gateway(GATEWAY_ID, 30)
        .expect("gateway client cert")
        .write(&ota_client.cert, &ota_client.key)
        .expect("write gateway client cert");

    let hospital = Ca::generate("Hospital IT CA", 30).expect("hospital CA");
    let (hospital_ca, _) = hospital.write(&hospital_dir).expect("write hospital CA");
    let files = |name: &str, issued: wardgate_tests::pki::Issued| {
        let id = ClientIdentity {
            cert: hospital_dir.join(format!("{name}.pem")),
            key: hospital_dir.join(format!("{name}.key")),
        };
        issued
            .write(&id.cert, &id.key)
            .expect("write hospital cert");
        id
    };
    let server = |name: &str, host: &str| {
        hospital
            .issue_server(&[host.to_owned()], 30)
            .map(|i| files(name, i))
            .expect("hospital server cert")
    };
    let client = |name: &str| {
        hospital
            .issue_cn_only(name, 30)
            .map(|i| files(name, i))
            .expect("hospital client cert")
    };
    Pki {
        ward_ca,
        edge_cert,
        edge_key,
        device_dir,
        hospital_ca,
        upstream: server("upstream", HOSPITAL_HOST),
        ota_server: server("ota-server", HOSPITAL_HOST),
        admin: server("admin", MGMT_GW),
        ota_client,
        uplink: client("ward-7-gateway"),
        consumer: client("hospital-consumer"),
    }
}

/// The upstream broker's config: mutual TLS on the hospital address.
fn mosquitto_conf(dir: &Path, p: &Pki) -> PathBuf {
    write(
        &dir.join("mosquitto.conf"),
        &format!(
            "per_listener_settings false\nlistener {UPSTREAM_PORT} {HOSPITAL_HOST}\n\
             cafile {ca}\ncertfile {cert}\nkeyfile {key}\nrequire_certificate true\n\
             use_identity_as_username true\nallow_anonymous false\npersistence false\n\
             log_dest file {log}\nlog_type all\nuser root\n",
            ca = p.hospital_ca.display(),
            cert = p.upstream.cert.display(),
            key = p.upstream.key.display(),
            log = dir.join("mosquitto.log").display(),
        ),
    )
}

/// The hospital's OTA server: a repository the operator authored with
/// `tuf-repo` (one manufacturer, `acme`), imported with `ota-server init`,
/// configured on the hospital address; and the API tokens.
struct OtaServer {
    config: PathBuf,
    data: PathBuf,
    repo: OtaRepo,
    admin_token: String,
    acme_token: String,
}

fn ota_server(dir: &Path, p: &Pki) -> OtaServer {
    let repo = OtaRepo::author(dir, &binary("tuf-repo"), "acme")
        .unwrap_or_else(|e| panic!("author the repository: {e}"));
    let (admin_token, admin_hash) = ota_server::auth::new_token();
    let (acme_token, acme_hash) = ota_server::auth::new_token();
    let data = dir.join("ota-data");
    let config = write(
        &dir.join("ota-server.toml"),
        &repo.server_toml(&ServerSettings {
            listen: &format!("{HOSPITAL_HOST}:{OTA_PORT}"),
            data_dir: &data,
            cert: &p.ota_server.cert,
            key: &p.ota_server.key,
            // Gateways present certificates of the ward CA.
            client_ca: &p.ward_ca,
            admin_token_sha256: &admin_hash,
            manufacturer_token_sha256: &acme_hash,
        }),
    );
    run_ok(
        Command::new(binary("ota-server"))
            .args(["init", "--config"])
            .arg(&config)
            .arg("--from")
            .arg(repo.authoring()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    OtaServer {
        config,
        data,
        repo,
        admin_token,
        acme_token,
    }
}

/// The gateway's config: each listener on its side; the OTA agent fetches
/// from the hospital host and serves images on the device-side address.
fn gateway_config(dir: &Path, p: &Pki, ota: &OtaServer) -> PathBuf {
    write(
        &dir.join("gateway.toml"),
        &format!(
            r#"[storage]
data_dir = "{data}"

[edge]
listen = "{DEVICE_GW}:{EDGE_PORT}"
ca_cert = "{ward_ca}"
server_cert = "{edge_cert}"
server_key = "{edge_key}"

[admin]
bind = "{MGMT_GW}:{ADMIN_PORT}"
tls_cert = "{admin_cert}"
tls_key = "{admin_key}"

[uplink]
enabled = true
broker_host = "{HOSPITAL_HOST}"
broker_port = {UPSTREAM_PORT}
client_id = "ward-7-gateway"
ca_file = "{hospital_ca}"
cert_file = "{uplink_cert}"
key_file = "{uplink_key}"
topic_prefix = "wardgate/ward"
formats = ["json"]

{ota_section}"#,
            data = dir.join("gateway-data").display(),
            ward_ca = p.ward_ca.display(),
            edge_cert = p.edge_cert.display(),
            edge_key = p.edge_key.display(),
            hospital_ca = p.hospital_ca.display(),
            uplink_cert = p.uplink.cert.display(),
            uplink_key = p.uplink.key.display(),
            admin_cert = p.admin.cert.display(),
            admin_key = p.admin.key.display(),
            ota_section = ota.repo.gateway_section(&GatewaySettings {
                server_url: &format!("https://{HOSPITAL_HOST}:{OTA_PORT}/"),
                ca_cert: &p.hospital_ca,
                client_cert: &p.ota_client.cert,
                client_key: &p.ota_client.key,
                image_listen: &format!("{DEVICE_GW}:{IMAGE_PORT}"),
            }),
        ),
    )
}

/// The shipped host firewall with its four values set for this topology.
fn firewall(dir: &Path, device_if: &str) -> PathBuf {
    let shipped = wardgate_tests::python::workspace_root().join("deploy/nftables/wardgate.nft");
    let text = std::fs::read_to_string(&shipped).expect("deploy/nftables/wardgate.nft");
    let mut set = 0;
    let rendered: Vec<String> = text
        .lines()
        .map(|line| {
            let value = match line.split(" = ").next() {
                Some("define device_if") => format!("\"{device_if}\""),
                Some("define device_addr") => DEVICE_GW.to_owned(),
                Some("define edge_port") => EDGE_PORT.to_string(),
                Some("define image_port") => IMAGE_PORT.to_string(),
                _ => return line.to_owned(),
            };
            set += 1;
            format!("{} = {value}", line.split(" = ").next().unwrap_or_default())
        })
        .collect();
    assert_eq!(set, 4, "the shipped ruleset's four `define` lines changed");
    write(&dir.join("wardgate.nft"), &rendered.join("\n"))
}

/// Listening TCP ports of the embedded broker: the gateway's listeners on
/// loopback in the gateway host.
fn broker_ports(ns: &str) -> Vec<u16> {
    let out = Topology::exec(ns, Path::new("ss"))
        .args(["-Hltn"])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|local| local.strip_prefix("127.0.0.1:"))
        .filter_map(|port| port.parse().ok())
        .collect()
}

/// What an HTTPS request made with `curl` from host `ns` got: the status
/// (0 when no HTTP answer came) and the body (curl's error then).
fn curl(ns: &str, ca: &Path, token: &str, url: &str, args: &[&str]) -> (u16, String) {
    let out = Topology::exec(ns, Path::new("curl"))
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    match status.trim().parse() {
        Ok(code) if code > 0 => (code, body.to_owned()),
        _ => (0, String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The manufacturer uploads `release` from the hospital host.
fn upload(t: &Topology, d: &Path, p: &Pki, ota: &OtaServer, release: &Release) {
    let body = write(&d.join("upload.bin"), "");
    std::fs::write(&body, &release.body).expect("write the upload body");
    let (status, answer) = curl(
        &t.hospital,
        &p.hospital_ca,
        &ota.acme_token,
        &format!(
            "https://{HOSPITAL_HOST}:{OTA_PORT}/{}",
            release.upload_path()
        ),
        &[
            "-H",
            &format!("X-Wardgate-Metadata-Length: {}", release.metadata_len),
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", body.display()),
        ],
    );
    assert_eq!(status, 201, "upload {}: {answer}", release.target);
}

/// The operator's campaign for `target` on this gateway, created from the
/// hospital host; its id.
fn create_campaign(t: &Topology, p: &Pki, ota: &OtaServer, target: &str) -> String {
    let request = serde_json::json!({
        "name": target,
        "target": target,
        "gateways": [GATEWAY_ID],
        "waves": ["100%"],
        "failure_threshold_percent": 0.0,
    });
    let (status, answer) = curl(
        &t.hospital,
        &p.hospital_ca,
        &ota.admin_token,
        &format!("https://{HOSPITAL_HOST}:{OTA_PORT}/api/v1/campaigns"),
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &request.to_string(),
        ],
    );
    assert_eq!(status, 201, "create the campaign: {answer}");
    let created: Value = serde_json::from_str(&answer).expect("campaign JSON");
    created["id"].as_str().expect("campaign id").to_owned()
}

/// `GET /api/v1/ota/status` of the gateway, from the management network.
fn ota_status(t: &Topology, p: &Pki, viewer: &str) -> Value {
    let (status, answer) = curl(
        &t.hospital,
        &p.hospital_ca,
        viewer,
        &format!("https://{MGMT_GW}:{ADMIN_PORT}/api/v1/ota/status"),
        &[],
    );
    assert_eq!(status, 200, "GET /api/v1/ota/status: {answer}");
    serde_json::from_str(&answer).expect("status JSON")
}

/// The device's entry in campaign `id` of the gateway's status.
fn device_in(status: &Value, id: &str) -> Option<Value> {
    status["campaigns"]
        .as_array()?
        .iter()
        .find(|c| c["campaign_id"] == id)?["devices"]
        .as_array()?
        .iter()
        .find(|d| d["device_id"] == DEVICE)
        .cloned()
}

// control: segmentation, update-rollback
#[test]
fn the_device_network_and_hospital_it_stay_apart() {
    if let Some(why) = missing_prerequisite() {
        // CI (`.ci/run`, as root, after scripts/setup-test-deps) must run it.
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "segmentation test cannot run under CI: {why}"
        );
        eprintln!("SKIPPED segmentation test: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let p = pki(d);
    let ota = ota_server(d, &p);
    let gw_config = gateway_config(d, &p, &ota);
    let gw_config_s = gw_config.to_str().expect("utf-8 path");
    assert_success(
        Command::new(binary("gateway"))
            .args(["device", "--config", gw_config_s, "enroll", "--id", DEVICE])
            .args([
                "--model",
                "M-1",
                "--hardware-id",
                HARDWARE_ID,
                "--manufacturer",
                "acme",
            ])
            .args(["--firmware", "1.0.0", "--cert"])
            .arg(p.device_dir.join(format!("{DEVICE}.pem"))),
        "gateway device enroll",
    );
    // A viewer token for hospital IT's look at the rollout.
    let created = run_ok(
        Command::new(binary("gateway"))
            .args(["access", "--config", gw_config_s, "token", "create"])
            .args(["--name", "hospital.viewer", "--role", "viewer"]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let viewer = created
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no secret in {created}"));

    // Declared before the processes, so it is dropped (namespaces deleted)
    // after every process in them was killed.
    let t = Topology::create();
    let mut running: Vec<ChildGuard> = Vec::new();
    let log = |name: &str| d.join(format!("{name}.log"));

    // Device host: a listener that hospital IT must not reach.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    running.push(
        ChildGuard::spawn_logged(
            Topology::exec(&t.device, &python())
                .args(["-m", "http.server", &DEVICE_LISTENER_PORT.to_string()])
                .args(["--bind", DEVICE_HOST])
                .current_dir(&empty),
            &log("device-listener"),
        )
        .expect("device listener"),
    );
    // Hospital host: the upstream broker and the OTA server.
    let mosquitto = Path::new(wardgate_tests::mosquitto::MOSQUITTO);
    running.push(
        ChildGuard::spawn_logged(
            Topology::exec(&t.hospital, mosquitto)
                .arg("-c")
                .arg(mosquitto_conf(d, &p)),
            &log("mosquitto-stdout"),
        )
        .expect("mosquitto"),
    );
    running.push(
        ChildGuard::spawn_logged(
            Topology::exec(&t.hospital, &binary("ota-server"))
                .args(["serve", "--config"])
                .arg(&ota.config),
            &log("ota-server"),
        )
        .expect("ota-server"),
    );
    wait_open(
        &t.device,
        DEVICE_HOST,
        DEVICE_LISTENER_PORT,
        "device listener",
        || read_log(&log("device-listener")),
    );
    wait_open(
        &t.hospital,
        HOSPITAL_HOST,
        UPSTREAM_PORT,
        "mosquitto",
        || read_log(&d.join("mosquitto.log")),
    );
    wait_open(&t.hospital, HOSPITAL_HOST, OTA_PORT, "ota-server", || {
        read_log(&log("ota-server"))
    });

    // The hospital's consumer of ward telemetry.
    running.push(
        ChildGuard::spawn_logged(
            // Line-buffered, so the log shows each message as it arrives.
            Topology::exec(&t.hospital, Path::new("stdbuf"))
                .args(["-oL", "mosquitto_sub"])
                .args(["-h", HOSPITAL_HOST, "-p", &UPSTREAM_PORT.to_string()])
                .arg("--cafile")
                .arg(&p.hospital_ca)
                .arg("--cert")
                .arg(&p.consumer.cert)
                .arg("--key")
                .arg(&p.consumer.key)
                // The consumer is test scaffolding, not under test: it checks
                // the broker's chain but not its IP name.
                .arg("--insecure")
                .args([
                    "-i",
                    "hospital-consumer",
                    "-t",
                    "wardgate/ward/#",
                    "-v",
                    "-d",
                ]),
            &log("consumer"),
        )
        .expect("mosquitto_sub"),
    );
    let subscribed = wait_blocking(READY, || read_log(&log("consumer")).contains("SUBACK"));
    assert!(
        subscribed,
        "consumer did not subscribe:\n{}",
        read_log(&log("consumer"))
    );

    // Gateway host.
    let gw_log = log("gateway");
    let gw_stderr = std::fs::File::create(&gw_log).expect("gateway log");
    let mut gateway = ChildGuard::spawn(
        Topology::exec(&t.gateway, &binary("gateway"))
            .args(["run", "--config", gw_config_s])
            .env("WARDGATE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(gw_stderr),
    )
    .expect("gateway");
    let ready = gateway.wait_for_line(Stream::Stdout, READY, |l| {
        l.starts_with("edge listening on").then_some(())
    });
    assert!(
        ready.is_ok(),
        "gateway did not start:\n{}",
        read_log(&gw_log)
    );
    running.push(gateway);
    // The admin API starts last, after the OTA agent and its image server.
    wait_open(&t.hospital, MGMT_GW, ADMIN_PORT, "admin API", || {
        read_log(&gw_log)
    });
    let ip_forward = Topology::exec(&t.gateway, Path::new("cat"))
        .arg("/proc/sys/net/ipv4/ip_forward")
        .output()
        .expect("read ip_forward");
    assert_eq!(String::from_utf8_lossy(&ip_forward.stdout).trim(), "0");

    // Positive controls: each port is reachable from the side that should
    // reach it.
    // The embedded broker has no listener at all (its sessions are
    // in-process pipes): nothing listens on loopback in the gateway host.
    // The loops over `broker` below would check any that appeared.
    let broker = broker_ports(&t.gateway);
    assert!(
        broker.is_empty(),
        "something listens on loopback in the gateway host: {broker:?}"
    );
    for &port in &broker {
        assert_open(&t.gateway, "127.0.0.1", port, "embedded broker on loopback");
    }
    assert_open(
        &t.gateway,
        HOSPITAL_HOST,
        UPSTREAM_PORT,
        "hospital broker from the gateway",
    );
    assert_open(
        &t.gateway,
        DEVICE_HOST,
        DEVICE_LISTENER_PORT,
        "device host from the gateway",
    );
    assert_open(
        &t.hospital,
        MGMT_GW,
        ADMIN_PORT,
        "admin API from the management network",
    );
    assert_open(&t.device, DEVICE_GW, EDGE_PORT, "edge from the device host");
    assert_open(
        &t.device,
        DEVICE_GW,
        IMAGE_PORT,
        "image server from the device host",
    );
    assert_open(
        &t.gateway,
        HOSPITAL_HOST,
        OTA_PORT,
        "OTA server from the gateway",
    );

    // The binds alone: nothing but the edge and the image server listens on
    // the device-side address (a refusal, not a silent drop), and nothing
    // is forwarded.
    for (port, what) in broker
        .iter()
        .map(|&p| (p, "embedded broker"))
        .chain([(ADMIN_PORT, "admin API")])
    {
        let got = probe(&t.device, DEVICE_GW, port, "3");
        assert_eq!(
            got, "refused",
            "{what} on the gateway's device-side address {DEVICE_GW}:{port}"
        );
    }
    assert_closed(
        &t.device,
        HOSPITAL_HOST,
        UPSTREAM_PORT,
        "hospital broker (no forwarding)",
    );
    assert_closed(
        &t.device,
        HOSPITAL_HOST,
        OTA_PORT,
        "OTA server (no forwarding)",
    );
    assert_closed(
        &t.hospital,
        DEVICE_HOST,
        DEVICE_LISTENER_PORT,
        "device host (no forwarding)",
    );

    // Why the firewall is shipped: Linux accepts a packet for any of its own
    // addresses on any interface, so with binds alone a device routing via
    // the gateway reaches the admin API on the management address. This
    // also shows the check after the firewall is not vacuous.
    let weak_host = probe(&t.device, MGMT_GW, ADMIN_PORT, "3");
    assert_eq!(
        weak_host, "open",
        "expected the weak host model without the firewall (management address from the device host)"
    );

    // As deployed: with the shipped host firewall.
    let rules = firewall(d, &t.device_if());
    assert_success(
        Topology::exec(&t.gateway, Path::new("nft"))
            .arg("-f")
            .arg(&rules),
        "nft",
    );

    // The edge works end to end: telemetry reaches the hospital broker.
    let sim = Topology::exec(&t.device, &binary("device-sim"))
        .args(["--host", DEVICE_GW, "--port", &EDGE_PORT.to_string()])
        .arg("--ca")
        .arg(&p.ward_ca)
        .arg("--cert-dir")
        .arg(&p.device_dir)
        .args([
            "--devices",
            "1",
            "--prefix",
            "monitor",
            "--count",
            "3",
            "--interval",
            "100ms",
        ])
        .env("WARDGATE_LOG", "warn")
        .output()
        .expect("run device-sim");
    assert!(
        sim.status.success(),
        "device-sim through the edge failed: {}\ngateway log:\n{}",
        String::from_utf8_lossy(&sim.stderr),
        read_log(&gw_log)
    );
    let topic = format!("wardgate/ward/devices/{DEVICE}/telemetry");
    let arrived = wait_blocking(READY, || {
        read_log(&log("consumer"))
            .lines()
            .any(|l| l.starts_with(&topic) && l.contains("\"readings\""))
    });
    assert!(
        arrived,
        "telemetry did not reach the hospital broker:\n{}\ngateway log:\n{}",
        read_log(&log("consumer")),
        read_log(&gw_log)
    );

    // From the device host: nothing but the edge and the image server.
    assert_closed(&t.device, HOSPITAL_HOST, UPSTREAM_PORT, "hospital broker");
    assert_closed(&t.device, HOSPITAL_HOST, OTA_PORT, "OTA server");
    assert_closed(
        &t.device,
        HOSPITAL_GW,
        ADMIN_PORT,
        "gateway's hospital-side address",
    );
    assert_closed(
        &t.device,
        MGMT_GW,
        ADMIN_PORT,
        "admin API on the management address",
    );
    assert_closed(&t.device, MGMT_HOSPITAL, 22, "management network");
    assert_closed(
        &t.device,
        DEVICE_GW,
        ADMIN_PORT,
        "admin API on the device-side address",
    );
    for &port in &broker {
        assert_closed(&t.device, DEVICE_GW, port, "embedded broker");
        assert_closed(
            &t.device,
            MGMT_GW,
            port,
            "embedded broker via the management address",
        );
    }
    // From the hospital host: not the device host.
    assert_closed(
        &t.hospital,
        DEVICE_HOST,
        DEVICE_LISTENER_PORT,
        "device host",
    );
    // The management side still reaches the admin API.
    assert_open(
        &t.hospital,
        MGMT_GW,
        ADMIN_PORT,
        "admin API from the management network",
    );

    // An update reaches a device once the rollout exists. The device takes
    // updates (A/B slots in its NVRAM, the manufacturer's key built in).
    let device_log = log("ota-device");
    running.push(
        ChildGuard::spawn_logged(
            Topology::exec(&t.device, &binary("device-sim"))
                .args(["--host", DEVICE_GW, "--port", &EDGE_PORT.to_string()])
                .arg("--ca")
                .arg(&p.ward_ca)
                .arg("--cert-dir")
                .arg(&p.device_dir)
                .args(["--devices", "1", "--prefix", "monitor", "--interval", "1s"])
                .arg("--state-dir")
                .arg(d.join("nvram"))
                .args(["--hardware-id", HARDWARE_ID, "--firmware", "1.0.0"])
                .arg("--manufacturer-key")
                .arg(ota.repo.manufacturer_public_key())
                .args(["--health-window", "5s"])
                .env("WARDGATE_LOG", "info")
                .env("NO_COLOR", "1"),
            &device_log,
        )
        .expect("device-sim taking updates"),
    );
    // No rollout yet: nothing for the gateway to run.
    let before = ota_status(&t, &p, &viewer);
    assert!(
        before["campaigns"].as_array().is_some_and(Vec::is_empty),
        "a campaign before any was created: {before:#}"
    );
    // The manufacturer signs 2.0.0 against the server's repository and
    // uploads it; the operator starts the campaign for this gateway.
    let image: Vec<u8> = (0..96 * 1024).map(|i| (i % 251) as u8 ^ 0x5a).collect();
    let release = ota
        .repo
        .release(
            &ota.data.join("repo/current"),
            "monitor",
            "2.0.0",
            &image,
            HARDWARE_ID,
        )
        .unwrap_or_else(|e| panic!("sign the release: {e}"));
    upload(&t, d, &p, &ota, &release);
    let campaign = create_campaign(&t, &p, &ota, &release.target);
    let updated = wait_blocking(Duration::from_secs(150), || {
        device_in(&ota_status(&t, &p, &viewer), &campaign).filter(|dev| {
            dev["state"] == "healthy"
                && dev["reported"] == true
                && dev["firmware_version"] == "2.0.0"
        })
    });
    assert!(
        updated.is_some(),
        "the device did not end healthy on 2.0.0: {:#}\n--- device ---\n{}\n--- gateway ---\n{}",
        ota_status(&t, &p, &viewer),
        read_log(&device_log),
        read_log(&gw_log)
    );
    // The device confirmed the new firmware itself, after downloading all
    // of it from the gateway's device-side image server.
    let device_said = read_log(&device_log);
    let whole = format!("received={}", image.len());
    for (what, detail) in [
        ("firmware downloaded", whole.as_str()),
        ("self-test passed; new firmware confirmed", ""),
    ] {
        assert!(
            device_said
                .lines()
                .any(|l| l.contains(what) && l.contains(detail) && l.contains("version=2.0.0")),
            "no {what:?} ({detail}) for 2.0.0 in the device log:\n{device_said}"
        );
    }
    // The OTA server has the result, reported by the gateway.
    let completed = wait_blocking(Duration::from_secs(30), || {
        let (status, answer) = curl(
            &t.hospital,
            &p.hospital_ca,
            &ota.admin_token,
            &format!("https://{HOSPITAL_HOST}:{OTA_PORT}/api/v1/campaigns/{campaign}"),
            &[],
        );
        let st: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        (status == 200 && st["state"] == "completed" && st["totals"]["success"] == 1).then_some(st)
    });
    assert!(
        completed.is_some(),
        "the OTA server's campaign did not complete with one success"
    );
    // Still only the edge and the image server from the device host.
    assert_closed(
        &t.device,
        HOSPITAL_HOST,
        OTA_PORT,
        "OTA server after the rollout",
    );

    // Kill the processes before the namespaces go.
    drop(running);
    drop(t);
}
