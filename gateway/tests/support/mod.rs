//! Shared integration-test harness for the gateway: PKI fixtures, a gateway
//! started in-process on 127.0.0.1 with real TLS, device clients (the
//! `device-sim` library and a raw TLS socket for attacks), a broker-side
//! subscriber through a `rumqttd` local link, and polling helpers (no fixed
//! sleeps).
#![allow(dead_code, missing_docs, clippy::missing_panics_doc)]

pub mod cli;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use device_sim::{DeviceOptions, DeviceTls, SimDevice};
use gateway::audit::AuditRecord;
use gateway::config::Config;
use gateway::pki::{Ca, Issued};
use gateway::registry::NewDevice;
use gateway::{Gateway, GatewayHandle};
use rumqttd::protocol::{v4::V4, Connect, Login, Packet, Protocol};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wardgate_protocol::DeviceId;

/// A ward PKI in a temp dir: CA, gateway server certificate for
/// `localhost` / `127.0.0.1`, keys 0600.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub ca_path: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("Test ward device CA", 30).unwrap();
        let (ca_path, _) = ca.write(dir.path()).unwrap();
        let server = ca
            .issue_server(&["localhost".to_owned(), "127.0.0.1".to_owned()], 30)
            .unwrap();
        let server_cert = dir.path().join("server.pem");
        let server_key = dir.path().join("server.key");
        server.write(&server_cert, &server_key).unwrap();
        Self {
            dir,
            ca,
            ca_path,
            server_cert,
            server_key,
        }
    }

    /// TLS material for a device certificate `issued` by any CA.
    pub fn device_tls(&self, issued: &Issued) -> DeviceTls {
        DeviceTls {
            ca_pem: self.ca.cert_pem.clone(),
            cert_pem: issued.cert_pem.clone(),
            key_pem: issued.key_pem.clone(),
        }
    }

    /// Write `issued` into the temp dir as `<name>.pem` / `<name>.key`.
    pub fn write_files(&self, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
        let c = self.dir.path().join(format!("{name}.pem"));
        let k = self.dir.path().join(format!("{name}.key"));
        issued.write(&c, &k).unwrap();
        (c, k)
    }
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
        let id = DeviceId::parse(id).unwrap();
        self.handle()
            .context
            .registry
            .enroll(
                &NewDevice {
                    id: id.clone(),
                    model: "SimMonitor 1".into(),
                    hardware_id: "sim-hw-1".into(),
                    manufacturer: "acme".into(),
                    firmware_version: "1.0.0".into(),
                    cert_fingerprint: None,
                },
                "test",
            )
            .unwrap();
        let issued = self.pki.ca.issue_device(&id, 10).unwrap();
        self.pki.device_tls(&issued)
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
        let audit = self.handle().context.audit.clone();
        let subject = subject.to_owned();
        let action = action.to_owned();
        let reason = reason.to_owned();
        wait_for(Duration::from_secs(10), || {
            audit
                .find(&subject, Some(&action))
                .unwrap()
                .into_iter()
                .find(|r| r.detail_json()["reason"] == reason.as_str())
        })
        .await
        .unwrap_or_else(|| panic!("no audit row {action} for {subject} with reason {reason}"))
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

/// Poll `f` until it returns `Some` or `timeout` passes.
pub async fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll the async `f` until it returns `Some` or `timeout` passes.
pub async fn wait_for_async<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A raw TLS connection to the edge, with an optional client certificate.
pub async fn raw_tls(
    port: u16,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    use rustls::pki_types::ServerName;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c?).map_err(std::io::Error::other)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(gateway::edge::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let certs =
                rustls_pemfile::certs(&mut cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
            let key = rustls_pemfile::private_key(&mut key.as_bytes())?
                .ok_or_else(|| std::io::Error::other("no key"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(std::io::Error::other)?
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    // TLS 1.3: a refused client certificate surfaces on the first read.
    use tokio::io::AsyncWriteExt;
    tls.flush().await?;
    Ok(tls)
}

/// An MQTT 3.1.1 CONNECT for `client_id`.
pub fn connect_v4(client_id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    let mut out = BytesMut::new();
    V4.write(
        Packet::Connect(
            Connect {
                keep_alive: 30,
                client_id: client_id.to_owned(),
                clean_session: true,
            },
            None,
            None,
            None,
            login.map(|(u, p)| Login {
                username: u.into(),
                password: p.into(),
            }),
        ),
        &mut out,
    )
    .unwrap();
    out.to_vec()
}

/// An MQTT 3.1.1 QoS 1 PUBLISH.
pub fn publish_v4(topic: &str, payload: &[u8], pkid: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend((topic.len() as u16).to_be_bytes());
    body.extend(topic.as_bytes());
    body.extend(pkid.to_be_bytes());
    body.extend(payload);
    let mut out = vec![0x32];
    out.extend(gateway::edge::frame::encode_remaining_length(body.len()));
    out.extend(body);
    out
}

/// Valid telemetry JSON with `seq`.
pub fn telemetry_json(seq: u64, heart_rate: f64) -> Vec<u8> {
    format!(
        r#"{{"schema":1,"seq":{seq},"ts":"2026-01-01T00:00:00Z","readings":[{{"kind":"heart_rate","value":{heart_rate}}}]}}"#
    )
    .into_bytes()
}

/// Read from a raw stream until EOF or error; returns the bytes read
/// (bounded by `timeout`).
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    timeout: Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let fut = async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(timeout, fut).await.ok()?;
    Some(all)
}
