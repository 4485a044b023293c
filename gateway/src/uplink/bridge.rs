//! The MQTT bridge to the hospital broker.
//!
//! One task owns a `rumqttc` client per session: TLS with the gateway's
//! client certificate, MQTT 3.1.1, QoS 1, clean session. Each session starts
//! from the oldest row still in the outbox and sends in id order (so
//! per-device order holds), keeping at most `max_inflight` publishes
//! unacknowledged. `rumqttc` reports each outgoing publish's packet id in
//! the order the publishes were queued, which maps packet ids back to rows;
//! a row is removed from the outbox only once the broker acknowledged every
//! rendering of it. Anything unacknowledged when a session ends is sent
//! again in the next one (QoS 1 may duplicate, never lose).
//!
//! Once a session has sent the backlog it read from the database, it takes
//! new rows from the outbox thread's in-memory hand-off
//! ([`Outbox::take_committed`]) and reads the database again only if that
//! overflowed.
//!
//! Reconnects wait a capped exponential backoff with full jitter in its
//! upper half, so a ward of gateways does not reconnect in lockstep.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Transport};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wardgate_protocol::DeviceId;
use wardgate_tls::describe::{self, Context, Side};
use wardgate_tls::{ClientTls, Credentials, TrustAnchors};

use super::error::UplinkError;
use super::outbox::{NoticeHook, Outbox, OutboxDepth, PendingMessage, Taken, UplinkNotice};
use crate::config::UplinkConfig;
use crate::render::{self, Format};

/// Row marker of publishes that belong to no outbox row (FHIR `Device`).
const DESCRIPTION_ROW: i64 = -1;

/// One upstream publish waiting for room in the inflight window.
struct Upstream {
    row: i64,
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// Looks up what the FHIR `Device` resource says about a device (the
/// registry, in a gateway). Called from a blocking thread.
pub type DeviceDirectory = Arc<dyn Fn(&DeviceId) -> Option<render::fhir::DeviceInfo> + Send + Sync>;

/// Largest MQTT packet the bridge sends or accepts.
const MAX_PACKET: usize = 256 * 1024;

/// Connection settings of the bridge, resolved from [`UplinkConfig`].
#[derive(Clone)]
pub struct BridgeSettings {
    /// Upstream host (also the TLS server name).
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// MQTT client id.
    pub client_id: String,
    /// TLS client configuration with the CA and client certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// Upstream topic prefix.
    pub topic_prefix: String,
    /// Renderings published per message.
    pub formats: Vec<Format>,
    /// Most unacknowledged publishes.
    pub max_inflight: u16,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Reconnect delay cap.
    pub backoff_max: Duration,
    /// Where FHIR `Device` descriptions come from (none: not published).
    pub devices: Option<DeviceDirectory>,
    /// Where link up / down notices go (the audit log, in a gateway).
    pub notices: Option<NoticeHook>,
}

impl std::fmt::Debug for BridgeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("formats", &self.formats)
            .finish_non_exhaustive()
    }
}

impl BridgeSettings {
    /// Options for a small client of its own beside the uplink (alerts,
    /// audit anchors): client id `<uplink.client_id>-<suffix>`, the
    /// uplink's broker and TLS identity, a clean session, 64 KiB packets.
    /// A separate session, so that what it sends never waits behind a
    /// telemetry backlog.
    #[must_use]
    pub fn side_client(&self, suffix: &str) -> MqttOptions {
        let mut o = MqttOptions::new(
            format!("{}-{suffix}", self.client_id),
            self.host.clone(),
            self.port,
        );
        o.set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(64 * 1024, 64 * 1024)
            .set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(self.tls.clone()),
            ));
        o
    }

    /// Resolve settings and load the TLS files named in `config`.
    ///
    /// # Errors
    /// [`UplinkError::Tls`] naming the unusable file.
    pub fn from_config(config: &UplinkConfig) -> Result<Self, UplinkError> {
        Ok(Self {
            host: config.broker_host.clone(),
            port: config.broker_port,
            client_id: config.client_id.clone(),
            tls: client_tls(&config.ca_file, &config.cert_file, &config.key_file)?,
            topic_prefix: config.topic_prefix.clone(),
            formats: config.formats.clone(),
            max_inflight: config.max_inflight,
            keep_alive: config.keep_alive,
            backoff_initial: config.backoff_initial,
            backoff_max: config.backoff_max,
            devices: None,
            notices: None,
        })
    }
}

/// How the uplink words a refused connection to the hospital broker: its
/// certificate is checked against `uplink.ca_file`, ours is `uplink.cert_file`.
pub const HANDSHAKE: Context<'static> = Context {
    side: Side::Client,
    peer: "upstream broker",
    trust_field: "uplink.ca_file",
    own_cert_field: Some("uplink.cert_file"),
    reissue: "ask the broker's operator for a certificate issued by the CA in uplink.ca_file, valid for uplink.broker_host",
};

/// Build the rustls client configuration: trust only `ca_file`, present
/// `cert_file`/`key_file`.
///
/// # Errors
/// [`UplinkError::Tls`] naming the field (`uplink.ca_file`,
/// `uplink.cert_file` or `uplink.key_file`) really at fault.
pub fn client_tls(
    ca_file: &Path,
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<rustls::ClientConfig>, UplinkError> {
    let roots = TrustAnchors::load("uplink.ca_file", ca_file)?;
    let identity = Credentials::load("uplink.cert_file", cert_file, "uplink.key_file", key_file)?;
    Ok(Arc::new(ClientTls::new(roots).identity(identity).build()?))
}

/// What the admin API shows about the uplink.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UplinkStatus {
    /// `host:port` of the upstream broker, `None` when disabled.
    pub broker: Option<String>,
    /// Whether a session with the upstream broker is up.
    pub connected: bool,
    /// The last connection error, if the link is down.
    pub last_error: Option<String>,
    /// Messages waiting in the outbox.
    pub outbox_rows: u64,
    /// Sealed bytes waiting in the outbox.
    pub outbox_bytes: u64,
    /// Age of the oldest waiting message, seconds.
    pub oldest_message_age_seconds: Option<f64>,
}

impl UplinkStatus {
    pub(crate) fn new(
        broker: Option<String>,
        connected: bool,
        last_error: Option<String>,
        depth: OutboxDepth,
    ) -> Self {
        Self {
            broker,
            connected,
            last_error,
            outbox_rows: depth.rows,
            outbox_bytes: depth.bytes,
            oldest_message_age_seconds: depth.oldest_received_ms.map(age_seconds),
        }
    }
}

fn age_seconds(received_ms: i64) -> f64 {
    let ms = (chrono::Utc::now().timestamp_millis() - received_ms).max(0);
    // Precision loss is irrelevant for an age in seconds.
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    s
}

#[derive(Debug, Default)]
struct LinkState {
    connected: bool,
    last_error: Option<String>,
}

/// Shared view of the bridge's connection state.
#[derive(Debug, Clone, Default)]
pub struct LinkStatus(Arc<Mutex<LinkState>>);

impl LinkStatus {
    /// Whether the session is up, and the last error.
    #[must_use]
    pub fn get(&self) -> (bool, Option<String>) {
        self.0
            .lock()
            .map(|s| (s.connected, s.last_error.clone()))
            .unwrap_or((false, None))
    }

    fn set(&self, connected: bool, error: Option<String>) {
        if let Ok(mut s) = self.0.lock() {
            s.connected = connected;
            s.last_error = error;
        }
    }
}

/// Start the bridge task draining `outbox` until `cancel` fires.
#[must_use]
pub fn spawn(
    settings: BridgeSettings,
    outbox: Outbox,
    cancel: CancellationToken,
) -> (LinkStatus, JoinHandle<()>) {
    let state = LinkStatus::default();
    let bridge = Bridge {
        settings,
        outbox,
        cancel,
        state: state.clone(),
        acked_pending: Arc::new(Mutex::new(HashSet::new())),
    };
    let span = tracing::info_span!("uplink", broker = %format!("{}:{}", bridge.settings.host, bridge.settings.port));
    let task = tokio::spawn(tracing::Instrument::instrument(bridge.run(), span));
    (state, task)
}

struct Bridge {
    settings: BridgeSettings,
    outbox: Outbox,
    cancel: CancellationToken,
    state: LinkStatus,
    /// Rows acknowledged upstream whose delete has not committed yet; a new
    /// session does not send them again.
    acked_pending: Arc<Mutex<HashSet<i64>>>,
}

enum SessionEnd {
    Shutdown,
    Failed { was_connected: bool, error: String },
}

fn failed(was_connected: bool, error: String) -> SessionEnd {
    SessionEnd::Failed {
        was_connected,
        error,
    }
}

/// What one upstream session has read, rendered, queued and in flight.
#[derive(Default)]
struct Flight {
    /// Highest outbox row id read in this session.
    cursor: i64,
    /// Whether the last page was the end of the outbox.
    caught_up: bool,
    /// Row per publish handed to `rumqttc`, awaiting its packet id.
    queued: VecDeque<i64>,
    /// Packet id -> row.
    inflight: HashMap<u16, i64>,
    /// Row -> publishes not yet acknowledged.
    outstanding: HashMap<i64, usize>,
    /// Rendered, not yet queued.
    backlog: VecDeque<Upstream>,
    /// Devices whose FHIR `Device` went out this session.
    described: HashSet<DeviceId>,
}

/// What a PUBACK acknowledged.
enum Acked {
    /// No publish of ours has that packet id.
    NotOurs,
    /// One publish, with more of its row (or a `Device` description) left.
    Partly,
    /// The last publish of this row: it may leave the outbox.
    Row(i64),
}

impl Flight {
    /// Queue backlog publishes while fewer than `window` are unacknowledged.
    fn send(&mut self, client: &AsyncClient, window: usize) -> Result<(), rumqttc::ClientError> {
        while self.queued.len() + self.inflight.len() < window {
            let Some(up) = self.backlog.pop_front() else {
                break;
            };
            client.try_publish(up.topic, QoS::AtLeastOnce, up.retain, up.payload)?;
            self.queued.push_back(up.row);
        }
        Ok(())
    }

    fn puback(&mut self, pkid: u16) -> Acked {
        let Some(row) = self.inflight.remove(&pkid) else {
            return Acked::NotOurs;
        };
        if row == DESCRIPTION_ROW {
            return Acked::Partly;
        }
        match self.outstanding.get_mut(&row) {
            Some(n) if *n > 1 => {
                *n -= 1;
                Acked::Partly
            }
            _ => {
                self.outstanding.remove(&row);
                Acked::Row(row)
            }
        }
    }
}

impl Bridge {
    async fn run(self) {
        // Acks to the outbox run beside the session so PUBACK handling never
        // waits for a commit; they are batched by the outbox's group commit.
        let (ack_tx, ack_rx) =
            mpsc::channel::<i64>(usize::from(self.settings.max_inflight) * 4 + 64);
        let acker = tokio::spawn(ack_loop(
            self.outbox.clone(),
            ack_rx,
            self.acked_pending.clone(),
        ));
        let age_ticker = tokio::spawn(age_loop(self.outbox.clone(), self.cancel.clone()));
        let mut failures: u32 = 0;
        // Whether the current outage was already reported.
        let mut down_reported = false;
        loop {
            match self.session(&ack_tx).await {
                SessionEnd::Shutdown => break,
                SessionEnd::Failed {
                    was_connected,
                    error,
                } => {
                    self.set_state(false, Some(error.clone()));
                    self.outbox.metrics().connected.set(0);
                    if was_connected || !down_reported {
                        down_reported = true;
                        self.notice(UplinkNotice::LinkDown {
                            broker: self.broker(),
                            was_connected,
                            error: error.clone(),
                        })
                        .await;
                    }
                    if was_connected {
                        failures = 0;
                        tracing::warn!(error = %error, "upstream broker session ended; telemetry stays in the outbox until it is back");
                    } else {
                        tracing::warn!(error = %error, attempt = failures + 1, "cannot connect to the upstream broker; check uplink.broker_host/port, its certificate and the network");
                    }
                    let delay = backoff(
                        self.settings.backoff_initial,
                        self.settings.backoff_max,
                        failures,
                    );
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        () = self.cancel.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                    self.outbox.metrics().reconnects.inc();
                }
            }
        }
        self.set_state(false, None);
        self.outbox.metrics().connected.set(0);
        drop(ack_tx);
        let _ = acker.await;
        age_ticker.abort();
        tracing::info!("uplink bridge stopped");
    }

    fn set_state(&self, connected: bool, error: Option<String>) {
        self.state.set(connected, error);
    }

    fn broker(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.port)
    }

    /// Hand `notice` to the hook on a blocking thread (it writes SQLite).
    async fn notice(&self, notice: UplinkNotice) {
        if let Some(hook) = self.settings.notices.clone() {
            let _ = tokio::task::spawn_blocking(move || hook(notice)).await;
        }
    }

    fn options(&self) -> MqttOptions {
        let s = &self.settings;
        let mut options = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
        options
            .set_keep_alive(s.keep_alive)
            .set_clean_session(true)
            .set_inflight(s.max_inflight)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(s.tls.clone()),
            ));
        options
    }

    /// One session with the upstream broker: connect, then send from the
    /// oldest row still in the outbox until the session fails or the bridge
    /// is cancelled.
    async fn session(&self, ack_tx: &mpsc::Sender<i64>) -> SessionEnd {
        let window = usize::from(self.settings.max_inflight);
        let (client, mut eventloop) = AsyncClient::new(self.options(), window + 16);
        if let Err(end) = self.connect(&mut eventloop).await {
            return end;
        }
        self.link_up().await;
        let mut flight = Flight::default();
        loop {
            if flight.backlog.is_empty() && !flight.caught_up {
                if let Err(end) = self.refill(&mut flight, window, ack_tx).await {
                    return end;
                }
            }
            // Keep at most `window` publishes between us and the broker's PUBACK.
            if let Err(e) = flight.send(&client, window) {
                return failed(true, format!("queueing publish failed: {e}"));
            }
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    let _ = client.try_disconnect();
                    return SessionEnd::Shutdown;
                }
                ev = eventloop.poll() => {
                    if let Err(end) = self.on_event(ev, &mut flight, ack_tx).await {
                        return end;
                    }
                }
                () = self.outbox.changed(), if flight.caught_up && flight.backlog.is_empty() => {
                    // Caught up: new rows come from the outbox thread's
                    // hand-off, unless it overflowed.
                    match self.outbox.take_committed() {
                        Taken::Broken => flight.caught_up = false,
                        Taken::Messages(fresh) => {
                            let cursor = flight.cursor;
                            let fresh: Vec<_> = fresh.into_iter().filter(|m| m.id > cursor).collect();
                            if let Some(last) = fresh.last() {
                                flight.cursor = last.id;
                            }
                            if let Err(end) = self.enqueue(&mut flight, fresh, ack_tx).await {
                                return end;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Wait for the broker's CONNACK.
    async fn connect(&self, eventloop: &mut EventLoop) -> Result<(), SessionEnd> {
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return Err(SessionEnd::Shutdown),
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if ack.code == rumqttc::ConnectReturnCode::Success {
                            return Ok(());
                        }
                        return Err(failed(false, format!("broker refused the connection: {:?}", ack.code)));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(failed(false, describe::error_chain(&e, &HANDSHAKE))),
                }
            }
        }
    }

    /// Record that a session is up: status, gauge, notice, log.
    async fn link_up(&self) {
        self.set_state(true, None);
        self.outbox.metrics().connected.set(1);
        self.notice(UplinkNotice::LinkUp {
            broker: self.broker(),
            backlog: self.outbox.depth().rows,
        })
        .await;
        tracing::info!(
            depth = self.outbox.depth().rows,
            "connected to the upstream broker"
        );
    }

    /// Read the next page of the outbox from the database (the backlog of
    /// a new session, or after the hand-off overflowed) and render it into
    /// the backlog.
    async fn refill(
        &self,
        flight: &mut Flight,
        window: usize,
        ack_tx: &mpsc::Sender<i64>,
    ) -> Result<(), SessionEnd> {
        let page = self
            .outbox
            .fetch(flight.cursor, window)
            .await
            .map_err(|e| failed(true, format!("outbox read failed: {e}")))?;
        flight.caught_up = page.scanned < window;
        if let Some(last) = page.last_id {
            flight.cursor = flight.cursor.max(last);
        }
        self.enqueue(flight, page.messages, ack_tx).await
    }

    /// Render `messages` (in row order, after everything queued before)
    /// into the backlog, skipping rows acknowledged upstream whose delete
    /// has not committed yet.
    async fn enqueue(
        &self,
        flight: &mut Flight,
        messages: Vec<PendingMessage>,
        ack_tx: &mpsc::Sender<i64>,
    ) -> Result<(), SessionEnd> {
        let skip: HashSet<i64> = self
            .acked_pending
            .lock()
            .map(|s| {
                messages
                    .iter()
                    .map(|m| m.id)
                    .filter(|id| s.contains(id))
                    .collect()
            })
            .unwrap_or_default();
        for message in messages {
            if skip.contains(&message.id) {
                continue;
            }
            let publishes = self.render(&message);
            if publishes.is_empty() {
                // Nothing to send in the configured formats.
                ack_tx
                    .send(message.id)
                    .await
                    .map_err(|_| SessionEnd::Shutdown)?;
                continue;
            }
            if let Some(device) = self
                .describe(&message.device_id, &mut flight.described)
                .await
            {
                flight.backlog.push_back(device);
            }
            flight.outstanding.insert(message.id, publishes.len());
            flight
                .backlog
                .extend(publishes.into_iter().map(|(topic, payload)| Upstream {
                    row: message.id,
                    topic,
                    payload,
                    retain: false,
                }));
        }
        Ok(())
    }

    /// Handle one event of the MQTT event loop.
    async fn on_event(
        &self,
        ev: Result<Event, rumqttc::ConnectionError>,
        flight: &mut Flight,
        ack_tx: &mpsc::Sender<i64>,
    ) -> Result<(), SessionEnd> {
        match ev {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Some(row) = flight.queued.pop_front() {
                    flight.inflight.insert(pkid, row);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => match flight.puback(ack.pkid) {
                Acked::NotOurs => {}
                Acked::Partly => {
                    self.outbox.metrics().published.inc();
                }
                Acked::Row(row) => {
                    self.outbox.metrics().published.inc();
                    if let Ok(mut s) = self.acked_pending.lock() {
                        s.insert(row);
                    }
                    ack_tx.send(row).await.map_err(|_| SessionEnd::Shutdown)?;
                }
            },
            Ok(Event::Incoming(Packet::Disconnect)) => {
                return Err(failed(true, "broker sent DISCONNECT".into()));
            }
            Ok(_) => {}
            Err(e) => return Err(failed(true, e.to_string())),
        }
        Ok(())
    }

    /// The FHIR `Device` resource of `device_id`, once per session, when
    /// FHIR is configured and the registry knows the device.
    async fn describe(
        &self,
        device_id: &DeviceId,
        described: &mut HashSet<DeviceId>,
    ) -> Option<Upstream> {
        if !self.settings.formats.contains(&Format::Fhir) || described.contains(device_id) {
            return None;
        }
        let directory = self.settings.devices.clone()?;
        described.insert(device_id.clone());
        let id = device_id.clone();
        let info = tokio::task::spawn_blocking(move || directory(&id))
            .await
            .ok()??;
        let payload = serde_json::to_vec(&render::fhir::device(&info)).ok()?;
        Some(Upstream {
            row: DESCRIPTION_ROW,
            topic: render::device_topic(&self.settings.topic_prefix, device_id),
            payload,
            retain: true,
        })
    }

    fn render(&self, message: &PendingMessage) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::with_capacity(self.settings.formats.len());
        let rendered = message.message();
        for format in &self.settings.formats {
            match render::render(*format, &rendered) {
                Ok(payloads) => {
                    let topic = render::upstream_topic(
                        &self.settings.topic_prefix,
                        *format,
                        &message.device_id,
                    );
                    out.extend(payloads.into_iter().map(|p| (topic.clone(), p)));
                }
                Err(e) => {
                    tracing::warn!(device_id = %message.device_id, seq = message.seq, format = %format, error = %e,
                        "cannot render message in this format; sending the other formats");
                }
            }
        }
        out
    }
}

async fn ack_loop(outbox: Outbox, mut rx: mpsc::Receiver<i64>, pending: Arc<Mutex<HashSet<i64>>>) {
    while let Some(first) = rx.recv().await {
        let mut ids = vec![first];
        while let Ok(id) = rx.try_recv() {
            ids.push(id);
        }
        match outbox.ack(ids.clone()).await {
            Ok(_) => {
                if let Ok(mut s) = pending.lock() {
                    for id in &ids {
                        s.remove(id);
                    }
                }
            }
            Err(e) => {
                // The rows stay in the outbox and will be sent again.
                tracing::error!(error = %e, rows = ids.len(), "cannot remove acknowledged rows from the outbox; they will be sent again");
                if let Ok(mut s) = pending.lock() {
                    for id in &ids {
                        s.remove(id);
                    }
                }
            }
        }
    }
}

async fn age_loop(outbox: Outbox, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {
                let age = outbox.depth().oldest_received_ms.map_or(0.0, age_seconds);
                outbox.metrics().oldest_age_seconds.set(age);
            }
        }
    }
}

/// Reconnect delay after `failures` consecutive failures: `initial * 2^n`
/// capped at `max`, then a uniform pick in its upper half (jitter).
#[must_use]
pub fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let exp = initial.saturating_mul(1u32 << failures.min(20));
    let capped = exp.min(max);
    let half = capped / 2;
    let jitter = rand::thread_rng().gen_range(0..=half.as_millis().max(1));
    half + Duration::from_millis(u64::try_from(jitter).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each TLS file problem is attributed to its own field (a certificate
    /// problem used to be blamed on `uplink.key_file`).
    #[test]
    fn client_tls_blames_the_field_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::pki::Ca::generate("ward", 5).unwrap();
        let (ca_pem, ca_key) = ca.write(dir.path()).unwrap();
        let id = wardgate_protocol::DeviceId::parse("gw-1").unwrap();
        let me = ca.issue_device(&id, 5).unwrap();
        let (cert, key) = (dir.path().join("gw.pem"), dir.path().join("gw.key"));
        me.write(&cert, &key).unwrap();
        client_tls(&ca_pem, &cert, &key).unwrap();
        let err =
            |ca: &Path, cert: &Path, key: &Path| client_tls(ca, cert, key).unwrap_err().to_string();
        let e = err(&key, &cert, &key);
        assert!(
            e.contains("uplink.ca_file") && !e.contains("uplink.key_file"),
            "{e}"
        );
        let e = err(&ca_pem, &key, &key);
        assert!(
            e.contains("uplink.cert_file:") || e.contains("uplink.cert_file ("),
            "{e}"
        );
        assert!(!e.contains("uplink.key_file"), "{e}");
        let garbled = dir.path().join("garbled.pem");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = err(&ca_pem, &garbled, &key);
        assert!(e.starts_with("uplink TLS: uplink.cert_file ("), "{e}");
        let e = err(&ca_pem, &cert, &ca_key);
        assert!(
            e.starts_with("uplink TLS: uplink.key_file (")
                && e.contains("does not belong to the certificate in uplink.cert_file"),
            "{e}"
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for n in 0..30 {
            let d = backoff(initial, max, n);
            let ceiling = initial.saturating_mul(1u32 << n.min(20)).min(max);
            assert!(
                d >= ceiling / 2 && d <= ceiling + Duration::from_millis(1),
                "n={n} d={d:?}"
            );
        }
        // Jitter: not all equal.
        let samples: HashSet<_> = (0..50).map(|_| backoff(initial, max, 10)).collect();
        assert!(samples.len() > 1);
    }
}
