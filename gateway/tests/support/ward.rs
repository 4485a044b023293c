//! A whole gateway for uplink tests: the hospital side ([`Upstream`]: a
//! test Mosquitto from the harness and a consumer on it), ward device CA,
//! edge server certificate, a config file whose `[uplink]` points at that
//! Mosquitto, enrolled devices, an MQTT device client (rumqttc over mutual
//! TLS) that records which telemetry the gateway acknowledged, and
//! [`arrived`] / [`tally`] to check upstream that nothing went missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use gateway::registry::Registry;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Transport};
use wardgate_protocol::message::Telemetry;
use wardgate_protocol::vitals::VitalKind;
use wardgate_protocol::DeviceId;
use wardgate_tests::mosquitto::{Mosquitto, Received, Subscriber};
use wardgate_tests::pki::{ClientIdentity, PkiDir};
use wardgate_tests::port::free_port;
use wardgate_tests::process::{read_log, ChildGuard};
use wardgate_tests::telemetry::telemetry;

/// What the hospital consumer of the uplink tests subscribes to: all that
/// a ward's gateway publishes upstream.
pub const WARD_TOPICS: &str = "wardgate/ward/#";

/// The hospital side of an uplink test or benchmark, in a temp dir of its
/// own: an upstream PKI, a real Mosquitto with mutual TLS on it, and a
/// consumer (persistent session, so an outage loses it nothing) recording
/// what arrives under a topic filter. [`Upstream::ward`] configures a
/// gateway against it in the same dir.
pub struct Upstream {
    pub sub: Subscriber,
    pub broker: Mosquitto,
    pub pki: PkiDir,
    /// Removed on drop, after the broker (fields drop in order).
    pub dir: tempfile::TempDir,
}

impl Upstream {
    /// Start the broker and its consumer on `filter` (e.g. [`WARD_TOPICS`]).
    pub async fn start(filter: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki = PkiDir::generate(
            &dir.path().join("upstream-pki"),
            "Hospital upstream test CA",
        )?;
        let broker = Mosquitto::start_new(&pki, &dir.path().join("mosquitto"))?;
        let consumer = pki.client("hospital-consumer")?;
        let sub = Subscriber::start(&broker, &pki, &consumer, "consumer", filter).await?;
        Ok(Self {
            sub,
            broker,
            pki,
            dir,
        })
    }

    /// Wait up to `limit` until all of `expected` arrived at the consumer;
    /// returns what did either way (the caller asserts on it).
    pub async fn delivery(&self, expected: &[(String, u64)], limit: Duration) -> Delivery {
        let got = self
            .sub
            .wait_until(limit, |r| Delivery::of(expected, r).missing.is_empty())
            .await;
        Delivery::of(expected, &got)
    }

    /// The temp dir (for files of the test's own beside the ward's).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The gateway `ward-7-gateway` configured against this broker with its
    /// client certificate from the upstream CA (see [`Ward::new`]).
    pub fn ward(&self, uplink_extra: &str) -> Result<Ward> {
        let gateway_id = self.pki.client("ward-7-gateway")?;
        Ward::new(
            self.dir.path(),
            &self.broker,
            &self.pki,
            &gateway_id,
            uplink_extra,
        )
    }
}

/// An [`Upstream`] on [`WARD_TOPICS`] and a [`Ward`] configured against it,
/// as most uplink tests begin.
pub async fn upstream_and_ward(uplink_extra: &str) -> Result<(Upstream, Ward)> {
    let upstream = Upstream::start(WARD_TOPICS).await?;
    let ward = upstream.ward(uplink_extra)?;
    Ok((upstream, ward))
}

/// (device, seq) of every telemetry message that arrived upstream, in
/// arrival order for each device; a payload on a telemetry topic that is
/// not valid telemetry fails the test.
pub fn arrived(r: &Received) -> Vec<(String, u64)> {
    r.by_topic
        .iter()
        .filter(|(t, _)| t.ends_with("/telemetry"))
        .flat_map(|(t, v)| {
            let device = t.split('/').nth(3).unwrap_or_default().to_owned();
            v.iter().map(move |p| {
                let t = Telemetry::from_json(p)
                    .unwrap_or_else(|e| panic!("telemetry upstream from {device}: {e}"));
                (device.clone(), t.seq)
            })
        })
        .collect()
}

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
        let edge = super::storage_and_edge_toml(
            &data_dir,
            &format!("127.0.0.1:{edge_port}"),
            &pki.ca_path,
            &pki.server_cert,
            &pki.server_key,
        );
        let toml = format!(
            r#"{edge}rate_per_second = 100000.0
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

    /// The client options (mutual TLS to its endpoint, clean session, 32
    /// in flight), for a test that drives its own `rumqttc` event loop.
    pub fn mqtt_options(&self) -> MqttOptions {
        self.options.clone()
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
            match next_event(&mut eventloop).await {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(seq) = queued.pop_front() {
                        inflight.insert(pkid, seq);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(seq) = inflight.remove(&ack.pkid) {
                        report.acked.push(seq);
                        if let Ok(mut a) = acked_live.lock() {
                            a.push(seq);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    report.error = Some(e);
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
                ev = next_event(&mut eventloop) => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => connected = true,
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        outstanding = outstanding.saturating_sub(1);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        report.error = Some(e);
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

/// The next event of a device's `eventloop`, or why its connection is
/// over: the client's error, or 30 s without any event. What both
/// [`Device::send`] and [`Device::send_paced`] report and stop on.
async fn next_event(eventloop: &mut EventLoop) -> Result<Event, String> {
    match tokio::time::timeout(Duration::from_secs(30), eventloop.poll()).await {
        Ok(Ok(event)) => Ok(event),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no progress for 30 s".into()),
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

/// Telemetry that arrived upstream against what should have: what the
/// devices saw acknowledged, or what was handed to the uplink.
pub struct Delivery {
    /// (device, seq) of each arrival, repeats included (see [`arrived`]).
    pub arrivals: Vec<(String, u64)>,
    /// Expected but not arrived.
    pub missing: Vec<(String, u64)>,
    /// Arrivals beyond the first of a message (QoS 1 allows them).
    pub duplicates: usize,
}

impl Delivery {
    /// What of `expected` the subscriber's snapshot `got` holds.
    pub fn of(expected: &[(String, u64)], got: &Received) -> Self {
        let arrivals = arrived(got);
        let (missing, duplicates) = tally(expected, &arrivals);
        Self {
            arrivals,
            missing,
            duplicates,
        }
    }

    /// Fails the test when anything is missing, naming the first 20 after
    /// `what` (all of them would flood the log).
    pub fn assert_none_missing(&self, what: &str) {
        assert!(
            self.missing.is_empty(),
            "{what}: {:?}",
            &self.missing[..self.missing.len().min(20)]
        );
    }
}

/// The figures of a test's summary line.
impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} arrived upstream, missing {}, duplicates {}",
            self.arrivals.len(),
            self.missing.len(),
            self.duplicates
        )
    }
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

// What the ingest and session benchmarks (`benches/ingest_vs_mosquitto.rs`,
// `benches/sessions_10k.rs`) add: Mosquitto with an ACL as a hospital would
// run it, a ward with more config keys and many devices enrolled at once,
// and a device client that times each message.

/// The ACL of a production-shaped [`Upstream`] (for
/// [`Upstream::start_with_acl`]): each device may publish only on its own
/// telemetry topic (`use_identity_as_username`: its certificate's CN is
/// its user name), the ward gateway of [`Upstream::ward`] only under its
/// topic prefix, and the hospital consumer reads everything.
pub const UPSTREAM_ACL: &str = "\
pattern write wardgate/v1/devices/%u/telemetry

user hospital-consumer
topic read #

user ward-7-gateway
topic readwrite wardgate/ward/#
";

impl Upstream {
    /// As [`Upstream::start`], with the ACL file `acl` (e.g.
    /// [`UPSTREAM_ACL`]) and further `mosquitto.conf` lines `extra` (e.g.
    /// `max_connections -1`): the harness's broker is started, stopped,
    /// given the lines and started again on the same port.
    pub async fn start_with_acl(filter: &str, acl: &str, extra: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki = PkiDir::generate(
            &dir.path().join("upstream-pki"),
            "Hospital upstream test CA",
        )?;
        let mut broker = Mosquitto::start_new(&pki, &dir.path().join("mosquitto"))?;
        broker.stop()?;
        let acl_file = broker.dir.join("acl");
        std::fs::write(&acl_file, acl)?;
        let conf = broker.dir.join("mosquitto.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str(&format!("acl_file {}\n{extra}\n", acl_file.display()));
        std::fs::write(&conf, text)?;
        broker.start()?;
        let consumer = pki.client("hospital-consumer")?;
        let sub = Subscriber::start(&broker, &pki, &consumer, "consumer", filter).await?;
        Ok(Self {
            sub,
            broker,
            pki,
            dir,
        })
    }
}

impl Ward {
    /// The ward device CA, to issue device certificates in memory (many of
    /// them, without files).
    pub fn device_ca(&self) -> &wardgate_tests::pki::Ca {
        &self.pki.ca
    }

    /// Add `edge_keys` (lines `key = value`) to the config file's `[edge]`
    /// section and `tables` (whole sections such as `[broker]`) at its end.
    pub fn extend_config(&self, edge_keys: &str, tables: &str) -> Result<()> {
        let text = std::fs::read_to_string(&self.config_path)?;
        let text = text.replacen("\n[log]\n", &format!("\n{edge_keys}\n\n[log]\n"), 1);
        std::fs::write(&self.config_path, format!("{text}\n{tables}\n"))?;
        Ok(())
    }

    /// Enrol every one of `ids` (as [`Ward::enroll`] does, audit rows
    /// included, but without certificates) through one registry handle
    /// whose connection does not wait for the disk on each commit
    /// (`synchronous = OFF`): thousands in seconds, before the gateway
    /// starts. The file is whole once the handle is closed.
    pub fn enroll_bulk<'a>(&self, ids: impl IntoIterator<Item = &'a DeviceId>) -> Result<usize> {
        let conn = gateway::db::open(&self.db_path())?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        let registry = Registry::from_connection(conn);
        let mut n = 0;
        for id in ids {
            registry.enroll(&super::new_device(id, "PM-100", "pm-100-rev-b"), "bench")?;
            n += 1;
        }
        Ok(n)
    }
}

/// How [`Device::send_timed`] sends.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as the client can, with at most `window` unacknowledged.
    FlatOut { window: usize },
    /// One message every `interval` whatever the acknowledgements, as a
    /// bedside device does, the first `offset` after the start.
    Every {
        interval: Duration,
        offset: Duration,
    },
}

/// What one run of [`Device::send_timed`] saw.
#[derive(Debug, Default, Clone)]
pub struct TimedReport {
    /// (seq, published, PUBACK received) of each acknowledged message; the
    /// publish time is the payload's `ts` to within microseconds.
    pub acked: Vec<(
        u64,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )>,
    /// Set when the connection ended before all were acknowledged.
    pub error: Option<String>,
}

impl Device {
    /// Connect and report the outcome on `connected`; wait until `start`
    /// holds a time, then publish `seqs` as telemetry (QoS 1) at `pace`
    /// from then on, timing each message, and disconnect. Stops at the
    /// first connection error. The start gate lets a benchmark connect
    /// every device before it starts the clock.
    pub async fn send_timed(
        &self,
        seqs: Vec<u64>,
        pace: Pace,
        connected: tokio::sync::mpsc::UnboundedSender<Result<(), String>>,
        mut start: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>,
    ) -> TimedReport {
        use std::collections::{HashMap, VecDeque};
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 64);
        let mut report = TimedReport::default();
        let up = loop {
            match tokio::time::timeout(Duration::from_secs(20), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => break Err(format!("connect: {e}")),
                Err(_) => break Err("connect timeout".to_owned()),
            }
        };
        let _ = connected.send(up.clone());
        if let Err(e) = up {
            report.error = Some(e);
            return report;
        }
        // The session waits idle (keep-alive 30 s) until the start.
        let begin = match start.wait_for(Option::is_some).await {
            Ok(at) => at.unwrap_or_else(tokio::time::Instant::now),
            Err(_) => {
                report.error = Some("no start".into());
                return report;
            }
        };
        let (window, interval, mut next_at) = match pace {
            Pace::FlatOut { window } => (window, None, begin),
            Pace::Every { interval, offset } => (usize::MAX, Some(interval), begin + offset),
        };
        let mut pending = seqs.into_iter().peekable();
        let mut queued: VecDeque<(u64, chrono::DateTime<chrono::Utc>)> = VecDeque::new();
        let mut inflight = HashMap::new();
        let publish = |seq: u64, queued: &mut VecDeque<_>| {
            let at = chrono::Utc::now();
            let sent = client.try_publish(
                self.topic.clone(),
                QoS::AtLeastOnce,
                false,
                telemetry_payload(seq),
            );
            queued.push_back((seq, at));
            sent.is_ok()
        };
        loop {
            if interval.is_none() {
                while queued.len() + inflight.len() < window {
                    let Some(seq) = pending.next() else { break };
                    if !publish(seq, &mut queued) {
                        report.error = Some("client queue".into());
                        return report;
                    }
                }
            }
            if pending.peek().is_none() && queued.is_empty() && inflight.is_empty() {
                break;
            }
            let due = interval.is_some() && pending.peek().is_some();
            tokio::select! {
                () = tokio::time::sleep_until(next_at), if due => {
                    next_at += interval.unwrap_or_default();
                    if let Some(seq) = pending.next() {
                        if !publish(seq, &mut queued) {
                            report.error = Some("client queue".into());
                            return report;
                        }
                    }
                }
                ev = next_event(&mut eventloop) => match ev {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(m) = queued.pop_front() {
                            inflight.insert(pkid, m);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some((seq, at)) = inflight.remove(&ack.pkid) {
                            report.acked.push((seq, at, chrono::Utc::now()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        report.error = Some(e);
                        return report;
                    }
                },
            }
        }
        // Say goodbye, so the peer sees a DISCONNECT rather than a reset.
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        report
    }
}
