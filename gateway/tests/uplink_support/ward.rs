//! A whole gateway for uplink tests: ward device CA, edge server
//! certificate, a config file whose `[uplink]` points at a test Mosquitto,
//! enrolled devices, and an MQTT device client (rumqttc over mutual TLS)
//! that records which telemetry the gateway acknowledged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use chrono::Utc;
use gateway::pki::Ca;
use gateway::registry::{NewDevice, Registry};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, Transport};
use wardgate_protocol::message::{Reading, Telemetry, SCHEMA_VERSION};
use wardgate_protocol::vitals::VitalKind;
use wardgate_protocol::DeviceId;

use super::{free_port, ClientIdentity, Mosquitto, UpstreamPki};

/// Files and settings of one test gateway.
pub struct Ward {
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub edge_port: u16,
    ca: Ca,
    ca_pem: PathBuf,
}

/// A device's certificate files.
pub struct DeviceIdentity {
    pub id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ward {
    /// Write PKI and config under `dir`; `uplink_extra` is appended inside
    /// the `[uplink]` section (e.g. `full_policy = "drop_oldest"`).
    pub fn new(
        dir: &Path,
        upstream: &Mosquitto,
        upstream_pki: &UpstreamPki,
        gateway_id: &ClientIdentity,
        uplink_extra: &str,
    ) -> Result<Self> {
        let pki_dir = dir.join("ward-pki");
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&pki_dir)?;
        std::fs::create_dir_all(&data_dir)?;
        let ca = Ca::generate("Ward 7 device CA", 30)?;
        let (ca_pem, _) = ca.write(&pki_dir)?;
        let server = ca.issue_server(&["localhost".to_owned(), "127.0.0.1".to_owned()], 30)?;
        let (server_cert, server_key) = (pki_dir.join("server.pem"), pki_dir.join("server.key"));
        server.write(&server_cert, &server_key)?;
        let edge_port = free_port()?;
        let config_path = dir.join("gateway.toml");
        let toml = format!(
            r#"[storage]
data_dir = "{data}"

[edge]
listen = "127.0.0.1:{edge_port}"
ca_cert = "{ca}"
server_cert = "{server_cert}"
server_key = "{server_key}"
rate_per_second = 100000.0
rate_burst = 100000

[log]
level = "warn"

[admin]
enabled = false

[uplink]
enabled = true
broker_host = "127.0.0.1"
broker_port = {port}
client_id = "ward-7-gateway"
ca_file = "{up_ca}"
cert_file = "{up_cert}"
key_file = "{up_key}"
topic_prefix = "wardgate/ward"
formats = ["json"]
backoff_initial = "50ms"
backoff_max = "500ms"
{uplink_extra}
"#,
            data = data_dir.display(),
            ca = ca_pem.display(),
            server_cert = server_cert.display(),
            server_key = server_key.display(),
            port = upstream.port,
            up_ca = upstream_pki.ca_pem.display(),
            up_cert = gateway_id.cert.display(),
            up_key = gateway_id.key.display(),
        );
        std::fs::write(&config_path, toml)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            data_dir,
            config_path,
            edge_port,
            ca,
            ca_pem,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("gateway.db")
    }

    /// Enrol `id` in the registry and issue its certificate.
    pub fn enroll(&self, id: &str) -> Result<DeviceIdentity> {
        let device = DeviceId::parse(id)?;
        let registry = Registry::open(&self.db_path())?;
        registry.enroll(
            &NewDevice {
                id: device.clone(),
                model: "PM-100".into(),
                hardware_id: "pm-100-rev-b".into(),
                manufacturer: "acme".into(),
                firmware_version: "1.0.0".into(),
                cert_fingerprint: None,
            },
            "test",
        )?;
        let issued = self.ca.issue_device(&device, 30)?;
        let ident = DeviceIdentity {
            id: id.to_owned(),
            cert: self.dir.join(format!("{id}.pem")),
            key: self.dir.join(format!("{id}.key")),
        };
        issued.write(&ident.cert, &ident.key)?;
        Ok(ident)
    }

    /// The parsed, validated configuration (for an in-process gateway).
    pub fn config(&self) -> Result<gateway::config::Config> {
        Ok(gateway::config::Config::load(&self.config_path)?)
    }

    /// Start `gateway run --config <file>` from `binary` and wait until its
    /// edge accepts TCP connections.
    pub fn spawn_process(&self, binary: &str) -> Result<GatewayProcess> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("gateway.log"))?;
        let child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {binary}"))?;
        let mut p = GatewayProcess { child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.edge_port)).is_ok() {
                return Ok(p);
            }
            if let Some(c) = p.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "gateway exited with {status} before listening; log:\n{}",
                        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("gateway edge did not listen within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A device MQTT client over mutual TLS to this gateway's edge.
    pub fn device(&self, ident: &DeviceIdentity) -> Result<Device> {
        let tls = gateway::uplink::bridge::client_tls(&self.ca_pem, &ident.cert, &ident.key)?;
        let mut options = MqttOptions::new(ident.id.clone(), "127.0.0.1", self.edge_port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(32)
            .set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        Ok(Device {
            id: ident.id.clone(),
            topic: format!("wardgate/v1/devices/{}/telemetry", ident.id),
            options,
        })
    }
}

/// A `gateway run` process, killed (SIGKILL) on drop.
pub struct GatewayProcess {
    child: Option<Child>,
}

impl GatewayProcess {
    /// `kill -9`: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A telemetry payload for `seq` whose device time is now.
pub fn telemetry_payload(seq: u64) -> Vec<u8> {
    let t = Telemetry {
        schema: SCHEMA_VERSION,
        seq,
        ts: Utc::now(),
        readings: vec![
            Reading {
                kind: VitalKind::HeartRate,
                value: 60.0 + (seq % 60) as f64,
            },
            Reading {
                kind: VitalKind::Spo2,
                value: 95.0 + (seq % 5) as f64,
            },
        ],
    };
    serde_json::to_vec(&t).unwrap_or_default()
}

/// Options for one device connection.
pub struct Device {
    pub id: String,
    topic: String,
    options: MqttOptions,
}

/// What one run of [`Device::send`] saw.
#[derive(Debug, Default, Clone)]
pub struct SendReport {
    /// Sequence numbers the gateway acknowledged (PUBACK), in order.
    pub acked: Vec<u64>,
    /// Set when the connection ended before all were acknowledged.
    pub error: Option<String>,
}

impl Device {
    /// A client that publishes the same telemetry straight to `broker` on
    /// `topic` (the baseline of the uplink benchmark).
    pub fn direct(
        id: &str,
        broker: &Mosquitto,
        pki: &UpstreamPki,
        ident: &ClientIdentity,
        topic: String,
    ) -> Result<Self> {
        let tls = gateway::uplink::bridge::client_tls(&pki.ca_pem, &ident.cert, &ident.key)?;
        let mut options = MqttOptions::new(id.to_owned(), "127.0.0.1", broker.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(32)
            .set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        Ok(Self {
            id: id.to_owned(),
            topic,
            options,
        })
    }

    /// Connect, publish `seqs` as telemetry (QoS 1, at most `window`
    /// unacknowledged) and return which were acknowledged. Stops at the
    /// first connection error (e.g. the gateway was killed). `acked` is
    /// also updated live, for a caller that kills the gateway mid-stream.
    pub async fn send(
        &self,
        seqs: impl IntoIterator<Item = u64>,
        window: usize,
        acked_live: Arc<Mutex<Vec<u64>>>,
    ) -> SendReport {
        let topic = self.topic.clone();
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), window + 8);
        let mut report = SendReport::default();
        // Connect first.
        loop {
            match tokio::time::timeout(Duration::from_secs(20), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    report.error = Some(format!("connect: {e}"));
                    return report;
                }
                Err(_) => {
                    report.error = Some("connect timeout".into());
                    return report;
                }
            }
        }
        let mut pending = seqs.into_iter().peekable();
        let mut queued = std::collections::VecDeque::new();
        let mut inflight = std::collections::HashMap::new();
        loop {
            while queued.len() + inflight.len() < window {
                let Some(seq) = pending.next() else { break };
                if client
                    .try_publish(
                        topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        telemetry_payload(seq),
                    )
                    .is_err()
                {
                    report.error = Some("client queue".into());
                    return report;
                }
                queued.push_back(seq);
            }
            if queued.is_empty() && inflight.is_empty() && pending.peek().is_none() {
                let _ = client.try_disconnect();
                return report;
            }
            match tokio::time::timeout(Duration::from_secs(30), eventloop.poll()).await {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    if let Some(seq) = queued.pop_front() {
                        inflight.insert(pkid, seq);
                    }
                }
                Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                    if let Some(seq) = inflight.remove(&ack.pkid) {
                        report.acked.push(seq);
                        if let Ok(mut a) = acked_live.lock() {
                            a.push(seq);
                        }
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    report.error = Some(e.to_string());
                    return report;
                }
                Err(_) => {
                    report.error = Some("no progress for 30 s".into());
                    return report;
                }
            }
        }
    }
}
