//! Many concurrent device sessions on one gateway, against the same
//! sessions on Mosquitto 2, in one run (issue #9).
//!
//! N (default 10,000) devices, each with its own X.509 certificate, hold a
//! mutual-TLS MQTT 3.1.1 session and publish QoS 1 telemetry every 10 s
//! (N / 10 msg/s overall, the devices' phases spread over the interval) for
//! S seconds after all are connected. Every message must be acknowledged
//! and delivered to the subscriber on the hospital Mosquitto: through the
//! gateway's uplink for the gateway, straight for Mosquitto (mutual TLS,
//! `use_identity_as_username`, a pattern ACL, `max_connections -1`).
//!
//! Printed for each broker: the time to connect every session (at most
//! `WARDGATE_BENCH_HANDSHAKES`, default 200, handshakes at once from this
//! side), VmRSS and VmHWM from `/proc/<pid>/status` and the number of open
//! files (`/proc/<pid>/fd`) at idle before, once all are connected and at
//! the end, the memory and files per session (delta / sessions), PUBACK
//! latency, and the ratios gateway / Mosquitto; with the goals (gateway RSS
//! under 300 MiB at 10,000 sessions, per-session memory and files no more
//! than Mosquitto's) marked met or missed. The gateway is the release
//! `gateway` binary in its own process; this process holds the N client
//! sessions (a small tokio-rustls client, one task each, the packets from
//! the harness's raw MQTT builders). Mosquitto runs first, so its figures
//! are of a fresh broker.
//!
//! Run with `cargo bench -p gateway --bench sessions_10k`;
//! `WARDGATE_BENCH_SESSIONS` (10000), `WARDGATE_BENCH_SECONDS` (60).

#![allow(missing_docs, clippy::cast_precision_loss)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::BytesMut;
use rumqttc::{ConnectReturnCode, Packet};
use support::bench::{env_or, percentile, run_on_two_workers, take_received, wait_count};
use support::ward::{tally, telemetry_payload, Upstream, UPSTREAM_ACL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use wardgate_protocol::message::Telemetry;
use wardgate_protocol::DeviceId;
use wardgate_tests::mosquitto::Subscriber;
use wardgate_tests::mqtt::{connect_v4, publish_v4, KEEP_ALIVE_SECS};
use wardgate_tests::pki::{Ca, Issued};
use wardgate_tls::rustls::client::Resumption;
use wardgate_tls::rustls::ClientConfig;
use wardgate_tls::{ClientTls, Credentials, TrustAnchors};

/// Each device's telemetry interval: 0.1 msg/s.
const INTERVAL: Duration = Duration::from_secs(10);
/// How often an idle session (connected, waiting for the start) pings,
/// well inside its keep-alive.
const PING: Duration = Duration::from_secs(KEEP_ALIVE_SECS as u64 * 2 / 3);
/// Open files this process needs besides one per session.
const OWN_FILES: u64 = 512;
const MIB: f64 = 1024.0;

/// Memory and open files of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Proc {
    rss_kib: u64,
    hwm_kib: u64,
    files: u64,
}

fn proc_figures(pid: u32) -> Result<Proc> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let files = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(Proc {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        files,
    })
}

/// The "Max open files" soft limit of process `pid`.
fn open_file_limit(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into())
}

/// The pid of the Mosquitto started with `config` (the harness keeps its
/// child to itself): the process whose command line names that file.
fn pid_running(config: &Path) -> Option<u32> {
    let needle = config.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == needle)
            .then_some(pid)
    })
}

/// Raise this process's soft open-file limit to the hard one (children
/// inherit it: Mosquitto and the gateway) and check that `sessions` fit.
fn raise_open_files(sessions: usize) -> Result<u64> {
    let soft = rlimit::increase_nofile_limit(u64::MAX).context("raise RLIMIT_NOFILE")?;
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let need = sessions as u64 + OWN_FILES;
    if soft < need {
        bail!(
            "the open-file limit is {soft} (hard limit {hard}), but {sessions} sessions need at least {need} open files in this process (and as many in the broker under test): raise the hard limit (`ulimit -Hn`, LimitNOFILE) or lower WARDGATE_BENCH_SESSIONS"
        );
    }
    Ok(soft)
}

/// Device certificates for `ids` from `ca`, on every core.
fn issue_all(ca: &Ca, ids: &[DeviceId]) -> Result<Vec<Issued>> {
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let chunk = ids.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|id| ca.issue_device(id, 30).map_err(anyhow::Error::from))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(ids.len());
        for p in parts {
            all.extend(
                p.join()
                    .map_err(|_| anyhow::anyhow!("issuing thread panicked"))??,
            );
        }
        Ok(all)
    })
}

/// A client config for one device: trusts `ca_pem`, presents `issued`,
/// keeps no resumption cache (its default one would cost tens of KiB per
/// session in this process and is never used).
fn client_config(ca_pem: &str, issued: &Issued) -> Result<Arc<ClientConfig>> {
    let roots = TrustAnchors::from_pem("the bench CA", ca_pem.as_bytes())?;
    let me = Credentials::from_pem(
        "the device certificate",
        issued.cert_pem.as_bytes(),
        "the device key",
        issued.key_pem.as_bytes(),
    )?;
    let mut config = ClientTls::new(roots).identity(me).build()?;
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// One device's MQTT session.
struct Session {
    tls: TlsStream<TcpStream>,
    buf: BytesMut,
}

impl Session {
    /// TLS to `127.0.0.1:port`, CONNECT as `id` (clean session), CONNACK.
    async fn open(port: u16, config: Arc<ClientConfig>, id: &str) -> Result<Self, String> {
        let tls = wardgate_tests::tls::connect(("127.0.0.1", port), "localhost", config)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let mut s = Self {
            tls,
            buf: BytesMut::with_capacity(64),
        };
        s.write(&connect_v4(id, None)).await?;
        match s.next_packet().await? {
            Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => Ok(s),
            Packet::ConnAck(a) => Err(format!("CONNACK {:?}", a.code)),
            other => Err(format!("expected CONNACK, got {other:?}")),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.tls
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.tls.flush().await.map_err(|e| format!("flush: {e}"))
    }

    /// A whole packet already read, if there is one.
    fn parsed(&mut self) -> Result<Option<Packet>, String> {
        match Packet::read(&mut self.buf, 65_536) {
            Ok(p) => Ok(Some(p)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(format!("bad packet from the broker: {e:?}")),
        }
    }

    async fn fill(&mut self) -> Result<(), String> {
        match self.tls.read_buf(&mut self.buf).await {
            Ok(0) => Err("connection closed by the broker".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    async fn next_packet(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(p) = self.parsed()? {
                return Ok(p);
            }
            self.fill().await?;
        }
    }

    /// DISCONNECT and TLS close, best effort.
    async fn close(mut self) {
        let _ = self.write(&[0xe0, 0x00]).await;
        let _ = self.tls.shutdown().await;
    }
}

/// What one session saw once started.
#[derive(Default)]
struct Report {
    sent: u64,
    /// PUBACK latency of each acknowledged message, microseconds.
    acked_us: Vec<u32>,
    error: Option<String>,
}

/// Ping until `start` holds a time; from then on publish `count` messages
/// (seq 1, 2, ...) on `topic`, the first `offset` after the start and then
/// one every [`INTERVAL`], and wait for every PUBACK.
async fn drive(
    s: &mut Session,
    topic: &str,
    count: u64,
    offset: Duration,
    mut start: watch::Receiver<Option<Instant>>,
) -> Report {
    let mut report = Report::default();
    let mut begin = *start.borrow();
    let mut next_ping = Instant::now() + PING;
    let mut outstanding: HashMap<u16, Instant> = HashMap::new();
    let mut pkid: u16 = 0;
    let far = Instant::now() + Duration::from_secs(86_400);
    loop {
        // Whatever is already read first: PUBACKs, PINGRESPs.
        loop {
            match s.parsed() {
                Ok(Some(Packet::PubAck(ack))) => {
                    if let Some(at) = outstanding.remove(&ack.pkid) {
                        let us = at.elapsed().as_micros();
                        report.acked_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    report.error = Some(e);
                    return report;
                }
            }
        }
        if begin.is_some() && report.sent == count && outstanding.is_empty() {
            return report;
        }
        let (next_pub, deadline) = match begin {
            Some(b) => (
                b + offset + INTERVAL * u32::try_from(report.sent).unwrap_or(u32::MAX),
                b + offset
                    + INTERVAL * u32::try_from(count).unwrap_or(u32::MAX)
                    + Duration::from_secs(60),
            ),
            None => (far, far),
        };
        let step = tokio::select! {
            r = start.changed(), if begin.is_none() => match r {
                Ok(()) => {
                    begin = *start.borrow();
                    Ok(())
                }
                Err(_) => Err("the benchmark ended before the start".to_owned()),
            },
            () = tokio::time::sleep_until(next_ping), if begin.is_none() => {
                next_ping += PING;
                s.write(&[0xc0, 0x00]).await
            }
            () = tokio::time::sleep_until(next_pub), if begin.is_some() && report.sent < count => {
                pkid = pkid % u16::MAX + 1;
                report.sent += 1;
                outstanding.insert(pkid, Instant::now());
                s.write(&publish_v4(topic, &telemetry_payload(report.sent), pkid)).await
            }
            () = tokio::time::sleep_until(deadline) => {
                Err(format!("{} PUBACKs missing 60 s after the last publish", outstanding.len()))
            }
            r = s.fill() => r,
        };
        if let Err(e) = step {
            report.error = Some(e);
            return report;
        }
    }
}

/// One broker under test.
struct Target<'a> {
    name: &'static str,
    port: u16,
    pid: u32,
    ca_pem: &'a str,
    /// Where device `id` publishes.
    topic: fn(&str) -> String,
    /// The prefix of the topics its telemetry arrives on at the subscriber.
    arrives_on: &'static str,
}

/// The figures of one broker.
#[derive(Default)]
struct Figures {
    sessions: usize,
    connected: usize,
    errors: BTreeMap<String, usize>,
    connect_s: f64,
    idle: Proc,
    all_connected: Proc,
    end: Proc,
    sent: u64,
    acked: usize,
    delivered: usize,
    missing: usize,
    duplicates: usize,
    session_errors: BTreeMap<String, usize>,
    ack_ms: Vec<f64>,
    file_limit: String,
}

impl Figures {
    fn per_session_kib(&self, at: Proc) -> f64 {
        (at.rss_kib as f64 - self.idle.rss_kib as f64) / self.connected.max(1) as f64
    }

    fn per_session_files(&self, at: Proc) -> f64 {
        (at.files as f64 - self.idle.files as f64) / self.connected.max(1) as f64
    }
}

/// First words of an error, to group them.
fn kind(e: &str) -> String {
    e.chars().take(120).collect()
}

/// Connect a session per `ids` / `issued` to `t` (at most `handshakes` at
/// once), run them for `seconds`, wait for delivery at `sub`, measure.
#[allow(clippy::too_many_lines)]
async fn run_sessions(
    t: &Target<'_>,
    ids: &[DeviceId],
    issued: Vec<Issued>,
    sub: &Subscriber,
    handshakes: usize,
    seconds: u64,
) -> Result<Figures> {
    let n = ids.len();
    let count = (seconds / INTERVAL.as_secs()).max(1);
    let mut f = Figures {
        sessions: n,
        file_limit: open_file_limit(t.pid),
        ..Figures::default()
    };
    take_received(sub);
    f.idle = proc_figures(t.pid)?;
    let (start_tx, start_rx) = watch::channel(None);
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let slots = Arc::new(tokio::sync::Semaphore::new(handshakes));
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, (id, cert)) in ids.iter().zip(issued).enumerate() {
        let slot = slots.clone().acquire_owned().await?;
        let config = client_config(t.ca_pem, &cert)?;
        drop(cert);
        let (id, topic, port) = (id.to_string(), (t.topic)(id.as_str()), t.port);
        let (start, done) = (start_rx.clone(), done_tx.clone());
        let offset = INTERVAL * u32::try_from(i).unwrap_or(0) / u32::try_from(n).unwrap_or(1);
        tasks.push(tokio::spawn(async move {
            let opened =
                tokio::time::timeout(Duration::from_secs(60), Session::open(port, config, &id))
                    .await
                    .unwrap_or_else(|_| Err("no CONNACK within 60 s".into()));
            drop(slot);
            let mut s = match opened {
                Ok(s) => {
                    let _ = done.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = done.send(Err(e.clone()));
                    return (None, Report::default());
                }
            };
            let report = drive(&mut s, &topic, count, offset, start).await;
            (Some(s), report)
        }));
    }
    drop(done_tx);
    while let Some(r) = done.recv().await {
        match r {
            Ok(()) => f.connected += 1,
            Err(e) => *f.errors.entry(kind(&e)).or_default() += 1,
        }
        if f.connected + f.errors.values().sum::<usize>() == n {
            break;
        }
    }
    f.connect_s = began.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.all_connected = proc_figures(t.pid)?;
    println!(
        "  {}: {} of {n} sessions connected in {:.1} s; running {seconds} s of telemetry",
        t.name, f.connected, f.connect_s
    );
    start_tx.send(Some(Instant::now() + Duration::from_secs(1)))?;
    let mut sessions = Vec::with_capacity(n);
    let mut connected_ids = Vec::with_capacity(n);
    for (task, id) in tasks.into_iter().zip(ids) {
        let (s, report) = task.await?;
        let Some(s) = s else { continue };
        sessions.push(s);
        connected_ids.push(id.to_string());
        f.sent += report.sent;
        f.acked += report.acked_us.len();
        f.ack_ms
            .extend(report.acked_us.iter().map(|us| f64::from(*us) / 1000.0));
        if let Some(e) = report.error {
            *f.session_errors.entry(kind(&e)).or_default() += 1;
        }
    }
    f.ack_ms.sort_by(f64::total_cmp);
    let prefix = t.arrives_on;
    let on_topic = |topic: &str| topic.starts_with(prefix) && topic.ends_with("/telemetry");
    wait_count(
        sub,
        on_topic,
        usize::try_from(f.sent).unwrap_or(usize::MAX),
        Duration::from_secs(120),
    )
    .await;
    let snap = sub.snapshot();
    let arrivals: Vec<(String, u64)> = snap
        .by_topic
        .iter()
        .filter(|(topic, _)| on_topic(topic))
        .flat_map(|(topic, v)| {
            let device = topic.split('/').nth(3).unwrap_or_default().to_owned();
            v.iter()
                .filter_map(move |p| Some((device.clone(), Telemetry::from_json(p).ok()?.seq)))
        })
        .collect();
    let expected: Vec<(String, u64)> = connected_ids
        .iter()
        .flat_map(|id| (1..=count).map(move |s| (id.clone(), s)))
        .collect();
    let (missing, duplicates) = tally(&expected, &arrivals);
    f.delivered = arrivals.len() - duplicates;
    f.missing = missing.len();
    f.duplicates = duplicates;
    f.end = proc_figures(t.pid)?;
    // Close every session (DISCONNECT), a few hundred at a time.
    let closing: Vec<_> = sessions
        .into_iter()
        .map(|s| tokio::spawn(tokio::time::timeout(Duration::from_secs(10), s.close())))
        .collect();
    for c in closing {
        let _ = c.await;
    }
    take_received(sub);
    Ok(f)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / MIB
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}

#[allow(clippy::too_many_lines)]
fn print(gw: &Figures, mq: &Figures, seconds: u64) {
    let row = |what: &str, g: String, m: String, ratio: Option<f64>| {
        let r = ratio.map_or(String::new(), |r| format!("{r:.2}x"));
        println!("  {what:<44} {g:>24} {m:>24} {r:>10}");
    };
    println!();
    row("", "gateway".into(), "mosquitto".into(), None);
    println!("  {:<44} {:>24} {:>24} {:>10}", "", "", "", "gw/mosq");
    row(
        "sessions connected",
        format!("{} of {}", gw.connected, gw.sessions),
        format!("{} of {}", mq.connected, mq.sessions),
        None,
    );
    row(
        "time to connect all, s",
        format!("{:.1}", gw.connect_s),
        format!("{:.1}", mq.connect_s),
        Some(gw.connect_s / mq.connect_s),
    );
    row(
        "  connections per second",
        format!("{:.0}", gw.connected as f64 / gw.connect_s),
        format!("{:.0}", mq.connected as f64 / mq.connect_s),
        None,
    );
    for (what, g, m) in [
        ("idle before", gw.idle, mq.idle),
        ("all connected", gw.all_connected, mq.all_connected),
        ("end (after the telemetry)", gw.end, mq.end),
    ] {
        row(
            &format!("{what}: VmRSS / VmHWM MiB"),
            format!("{:.1} / {:.1}", mib(g.rss_kib), mib(g.hwm_kib)),
            format!("{:.1} / {:.1}", mib(m.rss_kib), mib(m.hwm_kib)),
            Some(g.rss_kib as f64 / m.rss_kib as f64),
        );
        row(
            &format!("{what}: open files"),
            g.files.to_string(),
            m.files.to_string(),
            None,
        );
    }
    row(
        "open-file limit of the process",
        gw.file_limit.clone(),
        mq.file_limit.clone(),
        None,
    );
    let (gk, mk) = (
        gw.per_session_kib(gw.all_connected),
        mq.per_session_kib(mq.all_connected),
    );
    row(
        "per session, all connected: KiB",
        format!("{gk:.1}"),
        format!("{mk:.1}"),
        Some(gk / mk),
    );
    let (gke, mke) = (gw.per_session_kib(gw.end), mq.per_session_kib(mq.end));
    row(
        "per session, end: KiB",
        format!("{gke:.1}"),
        format!("{mke:.1}"),
        Some(gke / mke),
    );
    let (gf, mf) = (
        gw.per_session_files(gw.all_connected),
        mq.per_session_files(mq.all_connected),
    );
    row(
        "per session: open files",
        format!("{gf:.2}"),
        format!("{mf:.2}"),
        Some(gf / mf),
    );
    row(
        &format!("messages sent in {seconds} s / acknowledged"),
        format!("{} / {}", gw.sent, gw.acked),
        format!("{} / {}", mq.sent, mq.acked),
        None,
    );
    row(
        "delivered to the subscriber (missing, dups)",
        format!("{} ({}, {})", gw.delivered, gw.missing, gw.duplicates),
        format!("{} ({}, {})", mq.delivered, mq.missing, mq.duplicates),
        None,
    );
    let (gp50, gp99) = (percentile(&gw.ack_ms, 50.0), percentile(&gw.ack_ms, 99.0));
    let (mp50, mp99) = (percentile(&mq.ack_ms, 50.0), percentile(&mq.ack_ms, 99.0));
    row(
        "PUBACK latency p50 / p99, ms",
        format!("{gp50:.2} / {gp99:.2}"),
        format!("{mp50:.2} / {mp99:.2}"),
        Some(gp99 / mp99),
    );
    for (name, f) in [("gateway", gw), ("mosquitto", mq)] {
        for (e, n) in f.errors.iter().chain(&f.session_errors) {
            println!("  {name} error x{n}: {e}");
        }
    }
    let peak = mib(gw.end.hwm_kib.max(gw.end.rss_kib));
    let at = if gw.sessions == 10_000 {
        String::new()
    } else {
        format!(" (the goal is set at 10,000; this run has {})", gw.sessions)
    };
    println!(
        "  goal: gateway RSS under 300 MiB at 10,000 sessions: peak (VmHWM) {peak:.1} MiB, {:.1} MiB at the end: {}{at}",
        mib(gw.end.rss_kib),
        verdict(peak < 300.0 && gw.connected == gw.sessions)
    );
    println!(
        "  goal: per-session memory no more than Mosquitto's: {gk:.1} vs {mk:.1} KiB all connected, {gke:.1} vs {mke:.1} KiB at the end: {}",
        verdict(gk <= mk && gke <= mke)
    );
    println!(
        "  goal: per-session open files no more than Mosquitto's: {gf:.2} vs {mf:.2}: {}",
        verdict(gf <= mf + 0.005)
    );
    let complete = |f: &Figures| {
        f.connected == f.sessions
            && f.missing == 0
            && f.acked as u64 == f.sent
            && f.session_errors.is_empty()
    };
    println!(
        "  every message acknowledged and delivered: gateway {}, mosquitto {}",
        if complete(gw) { "yes" } else { "NO" },
        if complete(mq) { "yes" } else { "NO" }
    );
}

#[allow(clippy::too_many_lines)]
async fn run() -> Result<()> {
    let n: usize = env_or("WARDGATE_BENCH_SESSIONS", 10_000);
    let seconds: u64 = env_or("WARDGATE_BENCH_SECONDS", 60);
    let handshakes: usize = env_or("WARDGATE_BENCH_HANDSHAKES", 200).max(1);
    let began = std::time::Instant::now();
    let limit = raise_open_files(n)?;
    let upstream =
        Upstream::start_with_acl("wardgate/#", UPSTREAM_ACL, "max_connections -1\n").await?;
    let ids: Vec<DeviceId> = (0..n)
        .map(|i| DeviceId::parse(&format!("bed-{i:05}")))
        .collect::<Result<_, _>>()?;
    let config_file = upstream.broker.dir.join("mosquitto.conf");
    let mosquitto_pid = pid_running(&config_file).context("find Mosquitto's pid")?;

    println!(
        "sessions bench: {n} concurrent mutual-TLS device sessions (MQTT 3.1.1, one X.509 certificate each), QoS 1 telemetry every {} s each (~{} msg/s overall) for {seconds} s after all are connected; this side connects with at most {handshakes} handshakes at once; open-file limit {limit} (inherited by both brokers)",
        INTERVAL.as_secs(),
        n as u64 / INTERVAL.as_secs()
    );

    // Mosquitto first, fresh.
    let t = std::time::Instant::now();
    let certs = issue_all(&upstream.pki.ca, &ids)?;
    println!(
        "  {n} device certificates from the hospital CA in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    println!("  mosquitto: max_connections -1, pattern ACL write wardgate/v1/devices/%u/telemetry, use_identity_as_username");
    let mq = run_sessions(
        &Target {
            name: "mosquitto",
            port: upstream.broker.port,
            pid: mosquitto_pid,
            ca_pem: &upstream.pki.ca.cert_pem,
            topic: |id| format!("wardgate/v1/devices/{id}/telemetry"),
            arrives_on: "wardgate/v1/devices/",
        },
        &ids,
        certs,
        &upstream.sub,
        handshakes,
        seconds,
    )
    .await?;

    // The gateway, configured for N sessions.
    let ward = upstream.ward("")?;
    let edge_max = n + 64;
    let broker_max = n + 256;
    ward.extend_config(
        &format!("max_connections = {edge_max}"),
        &format!("[broker]\nmax_connections = {broker_max}"),
    )?;
    let t = std::time::Instant::now();
    ward.enroll_bulk(&ids)?;
    let enrolled_s = t.elapsed().as_secs_f64();
    let warm = ward.enroll("warmup-01")?;
    let t = std::time::Instant::now();
    let certs = issue_all(ward.device_ca(), &ids)?;
    let issued_s = t.elapsed().as_secs_f64();
    let config = ward.config()?;
    println!(
        "  gateway: {n} devices enrolled in {enrolled_s:.1} s (Registry::enroll with its audit rows, one handle on synchronous = OFF, before the gateway starts), certificates from the ward CA in {issued_s:.1} s; edge.max_connections {}, broker.max_connections {}, edge.max_concurrent_handshakes {}, edge.idle_timeout {:?}",
        config.edge.max_connections,
        config.broker.max_connections,
        config.edge.max_concurrent_handshakes,
        config.edge.idle_timeout
    );
    let mut gateway = ward.spawn_process(support::cli::BIN)?;
    // Warm-up: one message through edge, outbox and uplink, so that the
    // uplink is connected before the idle figures.
    let live = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = ward.device(&warm)?.send(1..=1, 1, live).await;
    if let Some(e) = r.error {
        bail!("warm-up device: {e}");
    }
    if !wait_count(
        &upstream.sub,
        |t| t.ends_with("/warmup-01/telemetry"),
        1,
        Duration::from_secs(60),
    )
    .await
    {
        bail!("the warm-up message did not arrive upstream");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ward_ca = std::fs::read_to_string(ward.ca_path())?;
    let gw = run_sessions(
        &Target {
            name: "gateway",
            port: ward.edge_port,
            pid: gateway.id(),
            ca_pem: &ward_ca,
            topic: |id| format!("wardgate/v1/devices/{id}/telemetry"),
            arrives_on: "wardgate/ward/devices/",
        },
        &ids,
        certs,
        &upstream.sub,
        handshakes,
        seconds,
    )
    .await?;
    gateway.terminate(Duration::from_secs(15))?;
    print(&gw, &mq, seconds);
    let log = wardgate_tests::process::read_log(&ward.dir.join("gateway.log"));
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    println!("  gateway log: {} warning/error lines", bad.len());
    for l in bad.iter().take(5) {
        println!("    {}", l.chars().take(300).collect::<String>());
    }
    println!("  run took {:.0} s", began.elapsed().as_secs_f64());
    upstream.sub.stop().await;
    Ok(())
}

fn main() -> Result<()> {
    run_on_two_workers(run())
}
