//! A real Mosquitto as the hospital's upstream broker: mutual TLS
//! (`require_certificate true`, the client's CN as its username, anonymous
//! refused) on a free loopback port, from a config generated in a temp dir,
//! killed on drop.
//!
//! The broker keeps its port across [`Mosquitto::stop`] /
//! [`Mosquitto::start`], and persistence is on, so a [`Subscriber`]'s
//! session and its queued QoS 1 messages survive an outage, which is what
//! the outage tests need to check that nothing went missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio_util::sync::CancellationToken;

use crate::error::OnPath as _;
use crate::pki::{ClientIdentity, PkiDir};
use crate::process::{read_log, ChildGuard};
use crate::{HarnessError, Result};

/// Where Debian installs the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// How long the broker may take to listen.
const START_LIMIT: Duration = Duration::from_secs(20);

/// A Mosquitto process with TLS and a client CA.
#[derive(Debug)]
pub struct Mosquitto {
    /// The loopback port it listens on.
    pub port: u16,
    /// Its config, persistence and log directory.
    pub dir: PathBuf,
    config: PathBuf,
    child: Option<ChildGuard>,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Mosquitto {
    /// Write a config for `pki` (its CA verifies clients, its server
    /// certificate is the broker's) in `dir`, and start the broker.
    ///
    /// # Errors
    /// [`HarnessError::Missing`] without Mosquitto, else as
    /// [`Mosquitto::start`].
    pub fn start_new(pki: &PkiDir, dir: &Path) -> Result<Self> {
        if !Path::new(MOSQUITTO).exists() {
            return Err(HarnessError::Missing {
                program: MOSQUITTO.into(),
            });
        }
        let persistence = dir.join("persist");
        std::fs::create_dir_all(&persistence).on("create directory", &persistence)?;
        let port = crate::port::free_port()?;
        let mut text = format!(
            "per_listener_settings false\n\
             listener {port} 127.0.0.1\n\
             cafile {ca}\n\
             certfile {cert}\n\
             keyfile {key}\n\
             require_certificate true\n\
             use_identity_as_username true\n\
             allow_anonymous false\n\
             persistence true\n\
             persistence_location {persist}/\n\
             autosave_interval 1\n\
             max_queued_messages 0\n\
             max_inflight_messages 0\n\
             log_dest file {log}\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n",
            ca = pki.ca_path.display(),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            persist = persistence.display(),
            log = dir.join("mosquitto.log").display(),
        );
        if running_as_root() {
            // Otherwise Mosquitto drops to user `mosquitto`, who cannot read
            // the test's private temp dir.
            text.push_str("user root\n");
        }
        let config = dir.join("mosquitto.conf");
        std::fs::write(&config, text).on("write", &config)?;
        let mut broker = Self {
            port,
            dir: dir.to_path_buf(),
            config,
            child: None,
        };
        broker.start()?;
        Ok(broker)
    }

    /// (Re)start the broker on the same port and wait until it accepts TCP.
    ///
    /// # Errors
    /// [`HarnessError::Spawn`], or [`HarnessError::Exited`] /
    /// [`HarnessError::NotReady`] with the broker's log.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut child = ChildGuard::spawn(
            Command::new(MOSQUITTO)
                .arg("-c")
                .arg(&self.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        child.wait_for_port(self.port, START_LIMIT, "mosquitto", || self.log())?;
        self.child = Some(child);
        Ok(())
    }

    /// Stop the broker with SIGTERM (so it saves its persistence file) and
    /// wait until it has exited.
    ///
    /// # Errors
    /// As [`ChildGuard::terminate`].
    pub fn stop(&mut self) -> Result<()> {
        match self.child.take() {
            Some(mut child) => child.terminate(Duration::from_secs(10)),
            None => Ok(()),
        }
    }

    /// Whether the broker was started and not stopped.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The broker's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        read_log(&self.dir.join("mosquitto.log"))
    }
}

/// What a [`Subscriber`] saw: per topic, payloads in arrival order (or
/// only their number, for a [`Subscriber::start_counting`] that runs for
/// hours).
#[derive(Default, Debug, Clone)]
pub struct Received {
    /// Payloads per topic (empty when only counting).
    pub by_topic: BTreeMap<String, Vec<Vec<u8>>>,
    /// Arrival time of each payload, parallel to `by_topic`.
    pub arrived_at: BTreeMap<String, Vec<chrono::DateTime<chrono::Utc>>>,
    /// Payloads per topic, counted.
    pub counts: BTreeMap<String, usize>,
    count_only: bool,
}

impl Received {
    /// How many payloads arrived on topics ending in `topic_suffix`.
    #[must_use]
    pub fn count(&self, topic_suffix: &str) -> usize {
        self.counts
            .iter()
            .filter(|(t, _)| t.ends_with(topic_suffix))
            .map(|(_, n)| n)
            .sum()
    }

    fn record(&mut self, topic: &str, payload: &[u8]) {
        *self.counts.entry(topic.to_owned()).or_default() += 1;
        if self.count_only {
            return;
        }
        let now = chrono::Utc::now();
        self.by_topic
            .entry(topic.to_owned())
            .or_default()
            .push(payload.to_vec());
        self.arrived_at
            .entry(topic.to_owned())
            .or_default()
            .push(now);
    }
}

/// A consumer on the broker (rumqttc, TLS with a client certificate,
/// persistent session, QoS 1) recording every message under its filter. It
/// reconnects by itself after an outage.
#[derive(Debug)]
pub struct Subscriber {
    /// What arrived so far.
    pub received: Arc<Mutex<Received>>,
    connected: Arc<AtomicBool>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Capacity of the subscriber's request queue (it only ever subscribes).
const SUBSCRIBER_QUEUE: usize = 64;

impl Subscriber {
    /// Connect as `client_id` with `identity` (issued by `pki`'s CA),
    /// subscribe to `filter`, and wait for the SUBACK.
    ///
    /// # Errors
    /// TLS material errors, or [`HarnessError::NotReady`] without a SUBACK
    /// within 20 s.
    pub async fn start(
        broker: &Mosquitto,
        pki: &PkiDir,
        identity: &ClientIdentity,
        client_id: &str,
        filter: &str,
    ) -> Result<Self> {
        Self::start_with(broker, pki, identity, client_id, filter, false).await
    }

    /// As [`Subscriber::start`], but keeping only the number of messages
    /// per topic, so that its memory stays bounded however long it runs.
    ///
    /// # Errors
    /// As [`Subscriber::start`].
    pub async fn start_counting(
        broker: &Mosquitto,
        pki: &PkiDir,
        identity: &ClientIdentity,
        client_id: &str,
        filter: &str,
    ) -> Result<Self> {
        Self::start_with(broker, pki, identity, client_id, filter, true).await
    }

    async fn start_with(
        broker: &Mosquitto,
        pki: &PkiDir,
        identity: &ClientIdentity,
        client_id: &str,
        filter: &str,
        count_only: bool,
    ) -> Result<Self> {
        let tls = crate::tls::client_config_files(&pki.ca_path, identity)?;
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        let (client, eventloop) = AsyncClient::new(options, SUBSCRIBER_QUEUE);
        let received = Arc::new(Mutex::new(Received {
            count_only,
            ..Received::default()
        }));
        let connected = Arc::new(AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(consume(
            client,
            eventloop,
            filter.to_owned(),
            received.clone(),
            connected.clone(),
            cancel.clone(),
            ready_tx,
        ));
        let acked = tokio::time::timeout(START_LIMIT, ready_rx).await;
        if !matches!(acked, Ok(Ok(()))) {
            cancel.cancel();
            return Err(HarnessError::NotReady {
                what: format!("a SUBACK for {filter} on port {}", broker.port),
                limit: START_LIMIT,
                log: broker.log(),
            });
        }
        Ok(Self {
            received,
            connected,
            cancel,
            task,
        })
    }

    /// A copy of what arrived so far.
    #[must_use]
    pub fn snapshot(&self) -> Received {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Whether the subscriber is connected right now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Poll until `done(received)` holds or `limit` passes; returns the last
    /// snapshot either way (the caller asserts on it).
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&Received) -> bool) -> Received {
        let mut last = Received::default();
        crate::wait::wait_for(limit, || {
            last = self.snapshot();
            done(&last)
        })
        .await;
        last
    }

    /// Disconnect and end the background task.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// The subscriber's event loop: subscribe on every CONNACK (the session is
/// persistent, so this is idempotent), record PUBLISHes, and on an error
/// pause briefly before rumqttc reconnects.
async fn consume(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    filter: String,
    received: Arc<Mutex<Received>>,
    connected: Arc<AtomicBool>,
    cancel: CancellationToken,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                connected.store(true, Ordering::SeqCst);
                let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Ok(mut r) = received.lock() {
                    r.record(&p.topic, &p.payload);
                }
            }
            Ok(_) => {}
            Err(_) => {
                connected.store(false, Ordering::SeqCst);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}
