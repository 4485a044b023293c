//! Test harness for the uplink: a real Mosquitto upstream broker with TLS and
//! a client CA (`require_certificate true`) on an ephemeral loopback port,
//! generated PKI, and a persistent-session subscriber that records what
//! arrives upstream.
//!
//! The broker runs from a generated config in a temp dir; [`Mosquitto`]
//! kills it on drop. It keeps its port across [`Mosquitto::stop`] /
//! [`Mosquitto::start`], and persistence is on, so a subscriber's session
//! and queued QoS 1 messages survive an outage.

#![allow(dead_code, missing_docs, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

pub mod ward;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// Generated PKI for the upstream link: one CA signing the broker's server
/// certificate (localhost / 127.0.0.1) and client certificates.
pub struct UpstreamPki {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A client identity written to `<name>.pem` / `<name>.key`.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl UpstreamPki {
    pub fn generate(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Hospital upstream test CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = dir.join("upstream-ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem())?;

        let server_key = KeyPair::generate()?;
        let mut sp = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        sp.distinguished_name
            .push(DnType::CommonName, "upstream-broker");
        let server = sp.signed_by(&server_key, &ca_cert, &ca_key)?;
        let server_cert = dir.join("broker.pem");
        let server_key_path = dir.join("broker.key");
        std::fs::write(&server_cert, server.pem())?;
        std::fs::write(&server_key_path, server_key.serialize_pem())?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ca_pem,
            server_cert,
            server_key: server_key_path,
            ca_cert,
            ca_key,
        })
    }

    /// Issue a client certificate with common name `name`.
    pub fn client(&self, name: &str) -> Result<ClientIdentity> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.signed_by(&key, &self.ca_cert, &self.ca_key)?;
        let id = ClientIdentity {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&id.cert, cert.pem())?;
        std::fs::write(&id.key, key.serialize_pem())?;
        Ok(id)
    }

    /// A client certificate from a CA the broker does not trust.
    pub fn foreign_client(&self, name: &str) -> Result<ClientIdentity> {
        let other = Self::generate(&self.dir.join("foreign"))?;
        other.client(name)
    }
}

/// A Mosquitto process with TLS and a client CA, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    pub dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Write the config for `pki` in `dir` and start the broker.
    pub fn start_new(pki: &UpstreamPki, dir: &Path) -> Result<Self> {
        if !Path::new(MOSQUITTO).exists() {
            bail!("{MOSQUITTO} is missing; run scripts/setup-test-deps");
        }
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let config = dir.join("mosquitto.conf");
        let persistence = dir.join("persist");
        std::fs::create_dir_all(&persistence)?;
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
            ca = pki.ca_pem.display(),
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
        std::fs::write(&config, text)?;
        let mut m = Self {
            port,
            dir: dir.to_path_buf(),
            config,
            child: None,
        };
        m.start()?;
        Ok(m)
    }

    /// (Re)start the broker on the same port and wait until it accepts TCP.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {MOSQUITTO}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "mosquitto exited with {status} before listening; log:\n{}",
                        self.log()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "mosquitto did not listen on port {} within 20 s; log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the broker (SIGTERM, so it saves its persistence file), and wait
    /// until its port is closed.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A free loopback port (bound then released).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// What a subscriber saw: per topic, payloads in arrival order.
#[derive(Default, Debug, Clone)]
pub struct Received {
    pub by_topic: BTreeMap<String, Vec<Vec<u8>>>,
    /// Arrival time of each payload, parallel to `by_topic`.
    pub arrived_at: BTreeMap<String, Vec<chrono::DateTime<chrono::Utc>>>,
}

impl Received {
    pub fn count(&self, topic_suffix: &str) -> usize {
        self.by_topic
            .iter()
            .filter(|(t, _)| t.ends_with(topic_suffix))
            .map(|(_, v)| v.len())
            .sum()
    }
}

/// An upstream subscriber (rumqttc, TLS, client certificate, persistent
/// session, QoS 1) collecting every message under `filter`.
pub struct Subscriber {
    pub received: Arc<Mutex<Received>>,
    connected: Arc<std::sync::atomic::AtomicBool>,
    cancel: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connect, subscribe, and wait until the subscription is acknowledged.
    pub async fn start(
        broker: &Mosquitto,
        pki: &UpstreamPki,
        id: &ClientIdentity,
        client_id: &str,
        filter: &str,
    ) -> Result<Self> {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
        let tls = gateway::uplink::bridge::client_tls(&pki.ca_pem, &id.cert, &id.key)?;
        let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let received = Arc::new(Mutex::new(Received::default()));
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cancel = tokio_util::sync::CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let filter = filter.to_owned();
        let task = {
            let received = received.clone();
            let connected = connected.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let mut ready = Some(ready_tx);
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        ev = eventloop.poll() => match ev {
                            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                                connected.store(true, std::sync::atomic::Ordering::SeqCst);
                                let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                            }
                            Ok(Event::Incoming(Packet::SubAck(_))) => {
                                if let Some(tx) = ready.take() { let _ = tx.send(()); }
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                if let Ok(mut r) = received.lock() {
                                    r.by_topic.entry(p.topic.clone()).or_default().push(p.payload.to_vec());
                                    r.arrived_at.entry(p.topic.clone()).or_default().push(chrono::Utc::now());
                                }
                            }
                            Ok(_) => {}
                            Err(_) => {
                                connected.store(false, std::sync::atomic::Ordering::SeqCst);
                                tokio::select! {
                                    () = cancel.cancelled() => break,
                                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                                }
                            }
                        }
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(20), ready_rx)
            .await
            .context("subscriber did not get SUBACK within 20 s")??;
        Ok(Self {
            received,
            connected,
            cancel,
            task,
        })
    }

    pub fn snapshot(&self) -> Received {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Poll until `done(received)` holds or `limit` passes; returns the last
    /// snapshot either way (the caller asserts on it).
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&Received) -> bool) -> Received {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let snap = self.snapshot();
            if done(&snap) || tokio::time::Instant::now() > deadline {
                return snap;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Python with fhir.resources: `WARDGATE_PYTHON`, else `<root>/.venv/bin/python`.
pub fn python() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("WARDGATE_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let p = root.join(".venv/bin/python");
    if !p.exists() {
        bail!("{} is missing; run scripts/setup-test-deps", p.display());
    }
    Ok(p)
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
