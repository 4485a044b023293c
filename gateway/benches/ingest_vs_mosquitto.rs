//! Ingest through the gateway against the same load sent straight to
//! Mosquitto 2, in one run (issue #9).
//!
//! Every device has its own X.509 certificate and speaks MQTT 3.1.1 over
//! mutual TLS, QoS 1. Three paths, each measured from the moment every
//! device is connected:
//!
//! - devices -> Mosquitto (`require_certificate`, `use_identity_as_username`,
//!   a pattern ACL letting each device publish only on its own
//!   `wardgate/v1/devices/<id>/telemetry`), acknowledged and delivered to a
//!   subscriber on that broker;
//! - devices -> gateway, acknowledged: each PUBACK follows the commit of the
//!   message to the sealed outbox (the uplink is on, so the outbox exists);
//!   time until the last PUBACK;
//! - devices -> gateway -> Mosquitto, delivered end to end: time until the
//!   subscriber has every message.
//!
//! Two loads: (a) flat out, D devices x M messages with at most 16
//! unacknowledged per device; (b) a ward, D devices at 10 msg/s each for
//! S seconds (the devices' phases spread over the interval), reporting p50 /
//! p99 latency from publish to PUBACK (acknowledged) and from publish to
//! arrival at the subscriber (delivered). The gateway is the release
//! `gateway` binary running as its own process, as Mosquitto does; the
//! devices and the subscriber share this process. Rounds alternate which
//! path goes first; per-round figures and the medians are printed with the
//! issue's targets, marked met or missed (the benchmark never fails on a
//! target). Run with `cargo bench -p gateway --bench ingest_vs_mosquitto`;
//! `WARDGATE_BENCH_DEVICES` (100), `WARDGATE_BENCH_MESSAGES` (500),
//! `WARDGATE_BENCH_SECONDS` (20), `WARDGATE_BENCH_ROUNDS` (3);
//! `WARDGATE_BENCH_UPLINK` adds `[uplink]` settings to the gateway's
//! configuration (`;` between lines, e.g. `max_inflight = 256`).

#![allow(missing_docs, clippy::cast_precision_loss)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};
use support::bench::{
    env_or, latency_ms, median, percentile, run_on_two_workers, take_received, wait_count,
};
use support::ward::{Device, Pace, Upstream, UPSTREAM_ACL};
use wardgate_protocol::message::Telemetry;
use wardgate_protocol::DeviceId;
use wardgate_tests::mosquitto::Subscriber;

/// Unacknowledged messages per device in the flat-out load.
const WINDOW: usize = 16;
/// A ward device's interval in load (b): 10 msg/s.
const WARD_INTERVAL: Duration = Duration::from_millis(100);
/// Where the devices publish straight to Mosquitto: the wardgate contract.
const DIRECT_PREFIX: &str = "wardgate/v1/devices/";
/// Where the gateway's uplink publishes (`uplink.topic_prefix` of the ward).
const UPLINK_PREFIX: &str = "wardgate/ward/devices/";

/// One path under one load.
struct Measured {
    messages: usize,
    /// Start to last PUBACK, seconds.
    acked_s: f64,
    /// Start to the later of last PUBACK and last first arrival, seconds.
    delivered_s: f64,
    /// Publish to PUBACK, ms, sorted.
    ack_ms: Vec<f64>,
    /// Publish (`ts`) to first arrival at the subscriber, ms, sorted.
    delivered_ms: Vec<f64>,
    duplicates: usize,
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_microseconds().unwrap_or(1) as f64 / 1e6).max(1e-6)
}

/// Connect all `devices`, start the clock, send `seqs` from each at the
/// pace `pace(i)` gives device `i`, and wait until the subscriber has
/// every message on `prefix`.
async fn phase(
    sub: &Subscriber,
    devices: &[Device],
    prefix: &'static str,
    seqs: RangeInclusive<u64>,
    pace: impl Fn(usize) -> Pace,
) -> Result<Measured> {
    take_received(sub);
    let (connected_tx, mut connected) = tokio::sync::mpsc::unbounded_channel();
    let (go, start_rx) = tokio::sync::watch::channel(None);
    let mut tasks = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let (d, seqs, p) = (d.clone(), seqs.clone().collect(), pace(i));
        let (tx, rx) = (connected_tx.clone(), start_rx.clone());
        tasks.push(tokio::spawn(
            async move { d.send_timed(seqs, p, tx, rx).await },
        ));
    }
    drop(connected_tx);
    for _ in devices {
        match tokio::time::timeout(Duration::from_secs(60), connected.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => bail!("a device could not connect: {e}"),
            _ => bail!("the devices did not all connect within 60 s"),
        }
    }
    let start = Utc::now();
    go.send(Some(tokio::time::Instant::now()))?;
    let mut acks = Vec::new();
    for t in tasks {
        let r = t.await?;
        if let Some(e) = r.error {
            bail!("device failed: {e}");
        }
        acks.extend(r.acked);
    }
    let expected = devices.len() * seqs.clone().count();
    if acks.len() != expected {
        bail!("{} of {expected} messages acknowledged", acks.len());
    }
    let last_ack = acks.iter().map(|a| a.2).max().unwrap_or(start);
    let mut ack_ms: Vec<f64> = acks
        .iter()
        .map(|(_, at, ack)| latency_ms(*at, *ack))
        .collect();
    ack_ms.sort_by(f64::total_cmp);

    // Delivered: the first arrival of each expected (device, seq).
    let on_topic = |t: &str| t.starts_with(prefix) && t.ends_with("/telemetry");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        wait_count(sub, on_topic, expected, left).await;
        let snap = sub.snapshot();
        let mut first: HashMap<(String, u64), (DateTime<Utc>, DateTime<Utc>)> = HashMap::new();
        let mut duplicates = 0;
        for (topic, payloads) in snap.by_topic.iter().filter(|(t, _)| on_topic(t)) {
            let device = topic.split('/').nth(3).unwrap_or_default();
            let times = snap.arrived_at.get(topic).map_or(&[][..], Vec::as_slice);
            for (p, at) in payloads.iter().zip(times) {
                let m = Telemetry::from_json(p).context("telemetry at the subscriber")?;
                if !seqs.contains(&m.seq) {
                    continue;
                }
                match first.entry((device.to_owned(), m.seq)) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert((m.ts, *at));
                    }
                    std::collections::hash_map::Entry::Occupied(_) => duplicates += 1,
                }
            }
        }
        let complete = devices
            .iter()
            .all(|d| seqs.clone().all(|s| first.contains_key(&(d.id.clone(), s))));
        if complete {
            let last = first.values().map(|v| v.1).max().unwrap_or(start);
            let mut delivered_ms: Vec<f64> = first
                .values()
                .map(|(ts, at)| latency_ms(*ts, *at))
                .collect();
            delivered_ms.sort_by(f64::total_cmp);
            return Ok(Measured {
                messages: expected,
                acked_s: seconds(start, last_ack),
                delivered_s: seconds(start, last.max(last_ack)),
                ack_ms,
                delivered_ms,
                duplicates,
            });
        }
        if left.is_zero() {
            bail!(
                "{} of {expected} messages arrived on {prefix}* within 180 s",
                first.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sequence numbers for the next phase: `count` more, strictly after every
/// earlier one (the edge refuses a `seq` it has seen).
struct Seqs(u64);

impl Seqs {
    fn next(&mut self, count: u64) -> RangeInclusive<u64> {
        let r = self.0 + 1..=self.0 + count;
        self.0 += count;
        r
    }
}

/// The figures of one round.
struct Round {
    first: &'static str,
    mosq_flat: Measured,
    gw_flat: Measured,
    mosq_ward: Measured,
    gw_ward: Measured,
}

fn rate(m: &Measured, s: f64) -> f64 {
    m.messages as f64 / s
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}

/// The gateway log's warnings and errors: how many, and the first few.
fn log_summary(path: &std::path::Path) -> String {
    let log = wardgate_tests::process::read_log(path);
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    let mut out = format!("{} warning/error lines", bad.len());
    for l in bad.iter().take(3) {
        out.push_str(&format!(
            "\n    {}",
            l.chars().take(300).collect::<String>()
        ));
    }
    out
}

/// Device `id` straight to Mosquitto, with its own certificate (CN `id`)
/// from the hospital CA, publishing on `topic`.
fn direct(upstream: &Upstream, id: &str, topic: String) -> Result<Device> {
    let files = upstream.pki.device(&DeviceId::parse(id)?)?;
    Device::direct(id, &upstream.broker, &upstream.pki, &files, topic)
}

/// Publish on a topic that is not the device's own, then on its own: the
/// broker must drop the first (it still acknowledges it, MQTT 3.1.1).
async fn check_acl(upstream: &Upstream, victim: &str) -> Result<bool> {
    let intruder = "acl-check-01";
    let sneaky = direct(
        upstream,
        intruder,
        format!("{DIRECT_PREFIX}{victim}/telemetry"),
    )?;
    let files = wardgate_tests::pki::ClientIdentity {
        cert: upstream.pki.dir.join(format!("{intruder}.pem")),
        key: upstream.pki.dir.join(format!("{intruder}.key")),
    };
    let own = Device::direct(
        intruder,
        &upstream.broker,
        &upstream.pki,
        &files,
        format!("{DIRECT_PREFIX}{intruder}/telemetry"),
    )?;
    take_received(&upstream.sub);
    let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    sneaky.send(1..=1, 1, live.clone()).await;
    own.send(1..=1, 1, live).await;
    let arrived = wait_count(
        &upstream.sub,
        |t| t.ends_with(&format!("/{intruder}/telemetry")),
        1,
        Duration::from_secs(20),
    )
    .await;
    let snap = take_received(&upstream.sub);
    Ok(arrived && snap.count(&format!("/{victim}/telemetry")) == 0)
}

#[allow(clippy::too_many_lines)]
async fn run() -> Result<()> {
    let n_devices: usize = env_or("WARDGATE_BENCH_DEVICES", 100);
    let messages: u64 = env_or("WARDGATE_BENCH_MESSAGES", 500);
    let ward_seconds: u64 = env_or("WARDGATE_BENCH_SECONDS", 20);
    let rounds: u32 = env_or("WARDGATE_BENCH_ROUNDS", 3).max(1);
    let ward_messages = ward_seconds * 1000 / WARD_INTERVAL.as_millis() as u64;
    let began = std::time::Instant::now();

    let upstream = Upstream::start_with_acl("wardgate/#", UPSTREAM_ACL, "").await?;
    let ids: Vec<String> = (0..n_devices).map(|i| format!("ingest-{i:03}")).collect();
    let acl_enforced = check_acl(&upstream, &ids[0]).await?;
    let direct_devices: Vec<Device> = ids
        .iter()
        .map(|id| direct(&upstream, id, format!("{DIRECT_PREFIX}{id}/telemetry")))
        .collect::<Result<_>>()?;
    let uplink_extra = std::env::var("WARDGATE_BENCH_UPLINK").unwrap_or_default();
    let ward = upstream.ward(&uplink_extra.replace(';', "\n"))?;
    let idents: Vec<_> = ids
        .iter()
        .map(|id| ward.enroll(id))
        .collect::<Result<_>>()?;
    let rate_limit = ward.config()?.edge;
    let mut gateway = ward.spawn_process(support::cli::BIN)?;
    let gw_devices: Vec<Device> = idents
        .iter()
        .map(|i| ward.device(i))
        .collect::<Result<_>>()?;

    let flat = |_: usize| Pace::FlatOut { window: WINDOW };
    let spread = |i: usize| Pace::Every {
        interval: WARD_INTERVAL,
        offset: WARD_INTERVAL * u32::try_from(i).unwrap_or(0)
            / u32::try_from(n_devices).unwrap_or(1),
    };
    let sub = &upstream.sub;
    let mut seqs = Seqs(0);
    // Warm-up, not measured: sessions, TLS, the uplink and the outbox.
    phase(sub, &direct_devices, DIRECT_PREFIX, seqs.next(5), flat).await?;
    phase(sub, &gw_devices, UPLINK_PREFIX, seqs.next(5), flat).await?;

    println!(
        "ingest vs mosquitto: {n_devices} devices, each its own X.509 certificate, MQTT 3.1.1 over mutual TLS, QoS 1; {rounds} round(s), the first path alternating"
    );
    println!(
        "  Mosquitto 2: require_certificate true, use_identity_as_username true, pattern ACL write {DIRECT_PREFIX}%u/telemetry (a device publishing on another's topic was dropped: {}); subscriber QoS 1 on the same broker",
        if acl_enforced { "yes" } else { "NO" }
    );
    println!(
        "  gateway: release binary as its own process; edge (mutual TLS, ACL, schema, replay, rate) -> sealed outbox committed before each PUBACK -> uplink QoS 1 over mutual TLS -> that Mosquitto ({UPLINK_PREFIX}<id>/telemetry, json)"
    );
    println!(
        "  edge.rate_per_second raised to {} (burst {}) for both loads: the default 50/s, burst 100 per device would refuse the flat-out load (load (b) is within the default)",
        rate_limit.rate_per_second, rate_limit.rate_burst
    );
    println!(
        "  devices and subscriber run in this process (2 tokio workers) on the same {}-core machine as both brokers",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );

    let mut all = Vec::new();
    for round in 1..=rounds {
        let mosquitto_first = round % 2 == 1;
        let (mut mosq_flat, mut gw_flat) = (None, None);
        for mosq in [mosquitto_first, !mosquitto_first] {
            let r = seqs.next(messages);
            if mosq {
                mosq_flat = Some(phase(sub, &direct_devices, DIRECT_PREFIX, r, flat).await?);
            } else {
                gw_flat = Some(phase(sub, &gw_devices, UPLINK_PREFIX, r, flat).await?);
            }
        }
        let (mut mosq_ward, mut gw_ward) = (None, None);
        for mosq in [mosquitto_first, !mosquitto_first] {
            let r = seqs.next(ward_messages);
            if mosq {
                mosq_ward = Some(phase(sub, &direct_devices, DIRECT_PREFIX, r, spread).await?);
            } else {
                gw_ward = Some(phase(sub, &gw_devices, UPLINK_PREFIX, r, spread).await?);
            }
        }
        let (Some(mosq_flat), Some(gw_flat), Some(mosq_ward), Some(gw_ward)) =
            (mosq_flat, gw_flat, mosq_ward, gw_ward)
        else {
            bail!("a phase did not run");
        };
        all.push(Round {
            first: if mosquitto_first {
                "mosquitto"
            } else {
                "gateway"
            },
            mosq_flat,
            gw_flat,
            mosq_ward,
            gw_ward,
        });
    }
    gateway.terminate(Duration::from_secs(15))?;

    // (a) flat out.
    println!(
        "\n(a) flat out: {n_devices} devices x {messages} msgs = {} per path, at most {WINDOW} unacknowledged per device",
        n_devices as u64 * messages
    );
    println!(
        "  {:<7} {:<10} {:>17} {:>17} {:>15} {:>18} {:>11} {:>15}",
        "round",
        "first",
        "mosq ack msg/s",
        "mosq ack+deliv",
        "gw acked msg/s",
        "gw delivered msg/s",
        "acked/mosq",
        "delivered/mosq"
    );
    let mut cols: [Vec<f64>; 4] = Default::default();
    for (i, r) in all.iter().enumerate() {
        let f = [
            rate(&r.mosq_flat, r.mosq_flat.acked_s),
            rate(&r.mosq_flat, r.mosq_flat.delivered_s),
            rate(&r.gw_flat, r.gw_flat.acked_s),
            rate(&r.gw_flat, r.gw_flat.delivered_s),
        ];
        println!(
            "  {:<7} {:<10} {:>17.0} {:>17.0} {:>15.0} {:>18.0} {:>10.2}x {:>14.2}x   (dups mosq {}, gw {})",
            i + 1,
            r.first,
            f[0],
            f[1],
            f[2],
            f[3],
            f[2] / f[1],
            f[3] / f[1],
            r.mosq_flat.duplicates,
            r.gw_flat.duplicates
        );
        for (c, v) in cols.iter_mut().zip(f) {
            c.push(v);
        }
    }
    let m: Vec<f64> = cols.iter_mut().map(|c| median(c)).collect();
    let (acked_ratio, delivered_ratio) = (m[2] / m[1], m[3] / m[1]);
    println!(
        "  {:<7} {:<10} {:>17.0} {:>17.0} {:>15.0} {:>18.0} {:>10.2}x {:>14.2}x",
        "median", "", m[0], m[1], m[2], m[3], acked_ratio, delivered_ratio
    );
    println!("  (Mosquitto's figure is acknowledged and delivered to the subscriber; both ratios are against it, of the medians)");
    println!(
        "  target: gateway acknowledged (durable) >= 1.0x Mosquitto: {acked_ratio:.2}x {}",
        verdict(acked_ratio >= 1.0)
    );
    println!(
        "  target: gateway delivered end to end >= 0.8x Mosquitto: {delivered_ratio:.2}x {}",
        verdict(delivered_ratio >= 0.8)
    );

    // (b) ward load.
    println!(
        "\n(b) ward load: {n_devices} devices x {} msg/s for {ward_seconds} s = {} per path, phases spread over the interval; latency ms",
        1000 / WARD_INTERVAL.as_millis(),
        n_devices as u64 * ward_messages
    );
    println!(
        "  {:<7} {:<10} {:>20} {:>20} {:>22} {:>22}",
        "round",
        "first",
        "mosq ack p50/p99",
        "gw ack p50/p99",
        "mosq delivered p50/p99",
        "gw delivered p50/p99"
    );
    let mut lat: [Vec<f64>; 8] = Default::default();
    for (i, r) in all.iter().enumerate() {
        let f = [
            percentile(&r.mosq_ward.ack_ms, 50.0),
            percentile(&r.mosq_ward.ack_ms, 99.0),
            percentile(&r.gw_ward.ack_ms, 50.0),
            percentile(&r.gw_ward.ack_ms, 99.0),
            percentile(&r.mosq_ward.delivered_ms, 50.0),
            percentile(&r.mosq_ward.delivered_ms, 99.0),
            percentile(&r.gw_ward.delivered_ms, 50.0),
            percentile(&r.gw_ward.delivered_ms, 99.0),
        ];
        println!(
            "  {:<7} {:<10} {:>9.2} / {:>8.2} {:>9.2} / {:>8.2} {:>11.2} / {:>8.2} {:>11.2} / {:>8.2}",
            i + 1,
            r.first,
            f[0],
            f[1],
            f[2],
            f[3],
            f[4],
            f[5],
            f[6],
            f[7]
        );
        for (c, v) in lat.iter_mut().zip(f) {
            c.push(v);
        }
    }
    let l: Vec<f64> = lat.iter_mut().map(|c| median(c)).collect();
    println!(
        "  {:<7} {:<10} {:>9.2} / {:>8.2} {:>9.2} / {:>8.2} {:>11.2} / {:>8.2} {:>11.2} / {:>8.2}",
        "median", "", l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]
    );
    for (what, p50, p99) in [
        ("acknowledged", l[2] / l[0], l[3] / l[1]),
        ("delivered", l[6] / l[4], l[7] / l[5]),
    ] {
        println!(
            "  target {what}: gateway p99 <= 1.0x Mosquitto's: {p99:.2}x {}; p50 <= 2x: {p50:.2}x {}",
            verdict(p99 <= 1.0),
            verdict(p50 <= 2.0)
        );
    }
    println!(
        "\n  gateway log: {}",
        log_summary(&ward.dir.join("gateway.log"))
    );
    println!("  run took {:.0} s", began.elapsed().as_secs_f64());
    upstream.sub.stop().await;
    Ok(())
}

fn main() -> Result<()> {
    run_on_two_workers(run())
}
