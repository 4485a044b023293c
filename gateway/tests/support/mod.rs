//! Gateway-local test support, built on the `wardgate-tests` harness (PKI,
//! waiting, raw MQTT and TLS, Mosquitto, processes come from there): what
//! only the gateway's tests need.
//!
//! - this module: a gateway started in-process from a `gateway::Config` on
//!   127.0.0.1 with real TLS ([`TestGateway`]), its device clients (the
//!   `device-sim` library), a broker-side subscriber through a `rumqttd`
//!   local link, and audit-row waits;
//! - [`cli`]: the real `gateway` binary;
//! - [`admin`]: the admin API server in-process with a manual clock;
//! - [`ward`]: a whole gateway configured by file against an upstream
//!   Mosquitto, for the uplink tests;
//! - [`bench`]: how the uplink benchmarks measure (they include this
//!   module too).
#![allow(dead_code, missing_docs, clippy::missing_panics_doc)]

pub mod admin;
pub mod bench;
pub mod cli;
pub mod ward;

use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

use device_sim::{DeviceOptions, DeviceTls, SimDevice};
use gateway::audit::{AuditLog, AuditRecord};
use gateway::config::Config;
use gateway::registry::{DeviceState, NewDevice};
use gateway::sink::AcceptedTelemetry;
use gateway::{Gateway, GatewayHandle};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wardgate_protocol::vitals::VitalKind;
use wardgate_protocol::DeviceId;
use wardgate_tests::pki::{Issued, PkiDir};
use wardgate_tests::tls::raw_tls;
use wardgate_tests::wait::wait_for;

/// The ward PKI of one test gateway, in its own temp dir: the device CA
/// and the edge's server certificate for `localhost` / `127.0.0.1`
/// (the harness's [`PkiDir`], which it derefs to).
pub struct TestPki {
    pub dir: tempfile::TempDir,
    files: PkiDir,
}

impl Deref for TestPki {
    type Target = PkiDir;

    fn deref(&self) -> &PkiDir {
        &self.files
    }
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = PkiDir::generate(dir.path(), "Test ward device CA").unwrap();
        Self { dir, files }
    }

    /// TLS material for a device certificate `issued` by any CA.
    pub fn device_tls(&self, issued: &Issued) -> DeviceTls {
        DeviceTls {
            ca_pem: self.ca.cert_pem.clone(),
            cert_pem: issued.cert_pem.clone(),
            key_pem: issued.key_pem.clone(),
        }
    }
}

/// The `[storage]` and `[edge]` sections of a test gateway's config file:
/// data in `data_dir`, the edge on `listen` with the ward CA `ca` and the
/// server certificate and key files given. The caller appends any further
/// `[edge]` keys, then its other sections.
pub fn storage_and_edge_toml(
    data_dir: &Path,
    listen: &str,
    ca: &Path,
    server_cert: &Path,
    server_key: &Path,
) -> String {
    format!(
        r#"[storage]
data_dir = "{data}"

[edge]
listen = "{listen}"
ca_cert = "{ca}"
server_cert = "{cert}"
server_key = "{key}"
"#,
        data = data_dir.display(),
        ca = ca.display(),
        cert = server_cert.display(),
        key = server_key.display(),
    )
}

/// Telemetry message `seq` of `device` with `readings`, as the edge hands
/// it to the uplink once its checks passed (received now), for tests that
/// drive the outbox or the bridge without an edge.
pub fn accepted(device: &str, seq: u64, readings: &[(VitalKind, f64)]) -> AcceptedTelemetry {
    let t = wardgate_tests::telemetry::telemetry(seq, readings);
    AcceptedTelemetry {
        device_id: DeviceId::parse(device).unwrap(),
        seq,
        topic: format!("wardgate/v1/devices/{device}/telemetry"),
        payload: serde_json::to_vec(&t).unwrap().into(),
        received_at: chrono::Utc::now(),
    }
}

/// Log to the test's output at `WARDGATE_LOG` (default `warn`), for the
/// long end-to-end tests whose failures need the gateway's own account;
/// once per test binary (a second call changes nothing).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("WARDGATE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// The registry record of an active device `id` from manufacturer `acme`
/// on firmware 1.0.0, with the model and hardware id given (no
/// certificate pin).
pub fn new_device(id: &DeviceId, model: &str, hardware_id: &str) -> NewDevice {
    NewDevice {
        id: id.clone(),
        model: model.into(),
        hardware_id: hardware_id.into(),
        manufacturer: "acme".into(),
        firmware_version: "1.0.0".into(),
        cert_fingerprint: None,
    }
}

/// Wait until `audit` holds a row for `subject` with `action` whose detail
/// reason is `reason`; returns it.
pub async fn wait_audit_in(
    audit: &AuditLog,
    subject: &str,
    action: &str,
    reason: &str,
) -> AuditRecord {
    wait_for(Duration::from_secs(10), || {
        audit
            .find(subject, Some(action))
            .unwrap()
            .into_iter()
            .find(|r| r.detail_json()["reason"] == reason)
    })
    .await
    .unwrap_or_else(|| panic!("no audit row {action} for {subject} with reason {reason}"))
}

/// A gateway running in this process, with its PKI and data dir.
pub struct TestGateway {
    pub pki: TestPki,
    pub data: tempfile::TempDir,
    pub handle: Option<GatewayHandle>,
}

/// A config for tests: edge on 127.0.0.1:0, temp data dir.
pub fn test_config(pki: &TestPki, data_dir: &Path) -> Config {
    let mut c = Config::default();
    c.storage.data_dir = data_dir.to_path_buf();
    c.edge.listen = "127.0.0.1:0".parse().unwrap();
    c.edge.ca_cert = pki.ca_path.clone();
    c.edge.server_cert = pki.server_cert.clone();
    c.edge.server_key = pki.server_key.clone();
    c.edge.max_payload_bytes = 4096;
    c.edge.handshake_timeout = Duration::from_secs(5);
    c.edge.connect_timeout = Duration::from_secs(5);
    // The admin API (another component) must not clash on its fixed port.
    c.admin.bind = "127.0.0.1:0".parse().unwrap();
    c
}

impl TestGateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let pki = TestPki::new();
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(&pki, &data.path().join("state"));
        tweak(&mut config);
        let handle = Gateway::start(config).await.unwrap();
        Self {
            pki,
            data,
            handle: Some(handle),
        }
    }

    pub fn handle(&self) -> &GatewayHandle {
        self.handle.as_ref().unwrap()
    }

    pub fn port(&self) -> u16 {
        self.handle().edge_addr().port()
    }

    /// Enrol `id` (active) and issue it a certificate; returns its TLS material.
    pub fn enroll(&self, id: &str) -> DeviceTls {
        let device = DeviceId::parse(id).unwrap();
        self.handle()
            .context
            .registry
            .enroll(&new_device(&device, "SimMonitor 1", "sim-hw-1"), "test")
            .unwrap();
        self.certificate(id)
    }

    /// A fresh certificate for `id` from the ward CA, whether or not `id`
    /// is enrolled (the registry is not touched).
    pub fn certificate(&self, id: &str) -> DeviceTls {
        let issued = self
            .pki
            .ca
            .issue_device(&DeviceId::parse(id).unwrap(), 10)
            .unwrap();
        self.pki.device_tls(&issued)
    }

    /// Enrol `id` and open a mutual-TLS socket to the edge with its
    /// certificate, sending nothing: for tests that speak MQTT bytes.
    pub async fn raw_device(&self, id: &str) -> TlsStream<TcpStream> {
        let tls = self.enroll(id);
        raw_tls(
            self.port(),
            &self.pki.ca.cert_pem,
            Some((&tls.cert_pem, &tls.key_pem)),
        )
        .await
        .unwrap()
    }

    /// The registry state of enrolled device `id` now.
    pub fn state(&self, id: &DeviceId) -> DeviceState {
        self.handle()
            .context
            .registry
            .get(id)
            .unwrap()
            .unwrap_or_else(|| panic!("{id} is not enrolled"))
            .state
    }

    pub fn options(&self, id: &str, tls: DeviceTls) -> DeviceOptions {
        DeviceOptions {
            id: DeviceId::parse(id).unwrap(),
            client_id: None,
            host: "localhost".into(),
            port: self.port(),
            tls,
            keep_alive: Duration::from_secs(30),
        }
    }

    /// Enrol and connect a well-behaved device.
    pub async fn device(&self, id: &str) -> SimDevice {
        let tls = self.enroll(id);
        SimDevice::connect(&self.options(id, tls)).await.unwrap()
    }

    /// Audit rows for `subject`, optionally of one action.
    pub fn audit(&self, subject: &str, action: Option<&str>) -> Vec<AuditRecord> {
        self.handle().context.audit.find(subject, action).unwrap()
    }

    /// Wait until an audit row for `subject` with `action` has detail
    /// `reason`; returns it.
    pub async fn wait_audit(&self, subject: &str, action: &str, reason: &str) -> AuditRecord {
        wait_audit_in(&self.handle().context.audit, subject, action, reason).await
    }

    /// Any audit row with `action` and detail reason `reason` (whatever the subject).
    pub async fn wait_audit_any(&self, action: &str, reason: &str) -> AuditRecord {
        let audit = self.handle().context.audit.clone();
        wait_for(Duration::from_secs(10), || {
            audit
                .all()
                .unwrap()
                .into_iter()
                .find(|r| r.action == action && r.detail_json()["reason"] == reason)
        })
        .await
        .unwrap_or_else(|| panic!("no audit row {action} with reason {reason}"))
    }

    /// A broker-side subscriber (local link) on `filter`.
    pub fn subscriber(&self, name: &str, filter: &str) -> Subscriber {
        let (mut tx, rx) = self.handle().broker.link(name).unwrap();
        tx.subscribe(filter).unwrap();
        Subscriber { _tx: tx, rx }
    }

    /// Check that a fresh device still gets telemetry through end to end.
    pub async fn assert_others_work(&self, id: &str) {
        let mut sub = self.subscriber(
            &format!("check.{id}"),
            &format!("wardgate/v1/devices/{id}/telemetry"),
        );
        let mut d = self.device(id).await;
        let mut g = device_sim::VitalsGenerator::new(1);
        let seq = d.publish_telemetry(g.next_readings()).await.unwrap();
        d.wait_puback(Duration::from_secs(10)).await.unwrap();
        let (topic, payload) = sub
            .next(Duration::from_secs(10))
            .await
            .expect("telemetry reaches the broker");
        assert_eq!(topic, format!("wardgate/v1/devices/{id}/telemetry"));
        let t = wardgate_protocol::Telemetry::from_json(&payload).unwrap();
        assert_eq!(t.seq, seq);
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.context.shutdown.cancel();
        }
    }
}

/// In-process subscriber on the embedded broker.
pub struct Subscriber {
    _tx: rumqttd::local::LinkTx,
    rx: rumqttd::local::LinkRx,
}

impl Subscriber {
    /// Next message (topic, payload) within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<(String, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.next()).await {
                Ok(Ok(Some(rumqttd::Notification::Forward(f)))) => {
                    return Some((
                        String::from_utf8_lossy(&f.publish.topic).into_owned(),
                        f.publish.payload.to_vec(),
                    ))
                }
                // The router pauses a link whose outgoing buffer filled
                // (`max_outgoing_packet_count`) until it is woken again.
                Ok(Ok(Some(rumqttd::Notification::Unschedule))) => {
                    if self.rx.wake().await.is_err() {
                        return None;
                    }
                }
                Ok(Ok(_)) => continue,
                _ => return None,
            }
        }
    }

    /// Collect messages until `quiet` passes without one.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(m) = self.next(quiet).await {
            out.push(m);
        }
        out
    }
}
