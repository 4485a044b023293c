//! A whole gateway for uplink tests: ward device CA, edge server
//! certificate, a config file whose `[uplink]` points at a test Mosquitto
//! (from the harness), enrolled devices, an MQTT device client (rumqttc
//! over mutual TLS) that records which telemetry the gateway acknowledged,
//! and [`tally`] to check upstream that nothing went missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use gateway::registry::Registry;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, Transport};
use wardgate_protocol::vitals::VitalKind;
use wardgate_protocol::DeviceId;
use wardgate_tests::mosquitto::Mosquitto;
use wardgate_tests::pki::{ClientIdentity, PkiDir};
use wardgate_tests::port::free_port;
use wardgate_tests::process::{read_log, ChildGuard};
use wardgate_tests::telemetry::telemetry;

/// Files and settings of one test gateway.
pub struct Ward {
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub edge_port: u16,
    pki: PkiDir,
}

/// A device's id and certificate files.
pub struct DeviceIdentity {
    pub id: String,
    pub files: ClientIdentity,
}

impl Ward {
    /// Write PKI and config under `dir`; `uplink_extra` is appended inside
    /// the `[uplink]` section (e.g. `full_policy = "drop_oldest"`).
    pub fn new(
        dir: &Path,
        upstream: &Mosquitto,
        upstream_pki: &PkiDir,
        gateway_id: &ClientIdentity,
        uplink_extra: &str,
    ) -> Result<Self> {
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir)?;
        let pki = PkiDir::generate(&dir.join("ward-pki"), "Ward 7 device CA")?;
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
            ca = pki.ca_path.display(),
            server_cert = pki.server_cert.display(),
            server_key = pki.server_key.display(),
            port = upstream.port,
            up_ca = upstream_pki.ca_path.display(),
            up_cert = gateway_id.cert.display(),
            up_key = gateway_id.key.display(),
        );
        std::fs::write(&config_path, toml)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            data_dir,
            config_path,
            edge_port,
            pki,
        })
    }

    /// The ward device CA certificate file (for raw device clients).
    pub fn ca_path(&self) -> &Path {
        &self.pki.ca_path
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("gateway.db")
    }

    /// Enrol `id` in the registry and issue its certificate.
    pub fn enroll(&self, id: &str) -> Result<DeviceIdentity> {
        let device = DeviceId::parse(id)?;
        let registry = Registry::open(&self.db_path())?;
        registry.enroll(
            &super::new_device(&device, "PM-100", "pm-100-rev-b"),
            "test",
        )?;
        Ok(DeviceIdentity {
            id: id.to_owned(),
            files: self.pki.device(&device)?,
        })
    }

    /// The parsed, validated configuration (for an in-process gateway).
    pub fn config(&self) -> Result<gateway::config::Config> {
        Ok(gateway::config::Config::load(&self.config_path)?)
    }

    /// Start `gateway run --config <file>` from `binary` and wait until its
    /// edge accepts TCP connections; the process is killed on drop.
    pub fn spawn_process(&self, binary: &str) -> Result<ChildGuard> {
        let log = self.dir.join("gateway.log");
        let mut child = ChildGuard::spawn_logged(
            Command::new(binary)
                .arg("run")
                .arg("--config")
                .arg(&self.config_path),
            &log,
        )?;
        child.wait_for_port(self.edge_port, Duration::from_secs(30), "gateway", || {
            read_log(&log)
        })?;
        Ok(child)
    }

    /// A device MQTT client over mutual TLS to this gateway's edge.
    pub fn device(&self, ident: &DeviceIdentity) -> Result<Device> {
        let topic = format!("wardgate/v1/devices/{}/telemetry", ident.id);
        let to = (self.edge_port, self.pki.ca_path.as_path());
        Device::over_tls(&ident.id, to, &ident.files, topic)
    }
}

/// A telemetry payload for `seq` whose device time is now.
pub fn telemetry_payload(seq: u64) -> Vec<u8> {
    let t = telemetry(
        seq,
        &[
            (VitalKind::HeartRate, 60.0 + (seq % 60) as f64),
            (VitalKind::Spo2, 95.0 + (seq % 5) as f64),
        ],
    );
    serde_json::to_vec(&t).unwrap_or_default()
}

/// Options for one device connection.
#[derive(Clone)]
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
        pki: &PkiDir,
        ident: &ClientIdentity,
        topic: String,
    ) -> Result<Self> {
        Self::over_tls(id, (broker.port, &pki.ca_path), ident, topic)
    }

    /// A client `id` for `127.0.0.1:<port>` trusting the CA file, with its
    /// client certificate files, publishing telemetry on `topic`.
    fn over_tls(
        id: &str,
        (port, ca): (u16, &Path),
        files: &ClientIdentity,
        topic: String,
    ) -> Result<Self> {
        let tls = wardgate_tests::tls::client_config_files(ca, files)?;
        let mut options = MqttOptions::new(id.to_owned(), "127.0.0.1", port);
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

impl Device {
    /// Connect and publish `seqs` as telemetry (QoS 1), one every
    /// `interval` whatever the acknowledgements, as a bedside device does;
    /// stops at the first connection error. The payload's `ts` is the time
    /// of each publish, so arrival minus `ts` upstream is the end-to-end
    /// latency.
    pub async fn send_paced(
        &self,
        seqs: impl IntoIterator<Item = u64>,
        interval: Duration,
    ) -> SendReport {
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 64);
        let mut report = SendReport::default();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = seqs.into_iter();
        let mut connected = false;
        let mut outstanding = 0usize;
        let mut done_sending = false;
        loop {
            tokio::select! {
                _ = ticker.tick(), if connected && !done_sending => {
                    match pending.next() {
                        Some(seq) => {
                            if client
                                .try_publish(self.topic.clone(), QoS::AtLeastOnce, false, telemetry_payload(seq))
                                .is_err()
                            {
                                report.error = Some("client queue".into());
                                return report;
                            }
                            outstanding += 1;
                        }
                        None => done_sending = true,
                    }
                }
                ev = tokio::time::timeout(Duration::from_secs(30), eventloop.poll()) => match ev {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => connected = true,
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                        outstanding = outstanding.saturating_sub(1);
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
                },
            }
            if done_sending && outstanding == 0 {
                let _ = client.try_disconnect();
                return report;
            }
        }
    }
}

/// Wait until the in-process gateway's uplink is connected (30 s at most).
///
/// # Errors
/// When it did not connect in time.
pub async fn wait_uplink_connected(handle: &gateway::app::GatewayHandle) -> Result<()> {
    let connected = wardgate_tests::wait::wait_for(Duration::from_secs(30), || {
        handle
            .context
            .metrics
            .encode()
            .contains("wardgate_uplink_connected 1")
    })
    .await;
    anyhow::ensure!(connected, "uplink did not connect");
    Ok(())
}

/// Count, per (device, seq), how many times it arrived; returns
/// (missing, duplicates) against `expected`.
pub fn tally(expected: &[(String, u64)], arrived: &[(String, u64)]) -> (Vec<(String, u64)>, usize) {
    let mut counts: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for a in arrived {
        *counts.entry(a.clone()).or_default() += 1;
    }
    let missing = expected
        .iter()
        .filter(|e| !counts.contains_key(*e))
        .cloned()
        .collect();
    let duplicates = counts.values().map(|c| c.saturating_sub(1)).sum();
    (missing, duplicates)
}
