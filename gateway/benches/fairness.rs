//! Fairness under a flood: does one device sending as fast as it can delay
//! everyone else's telemetry? Measured end to end, in one run.
//!
//! An in-process gateway with the edge's default per-device rate limit
//! (`edge.rate_per_second` 50, `edge.rate_burst` 100) and its durable
//! uplink to a local Mosquitto. 20 bystander devices publish QoS 1
//! telemetry every 100 ms, as bedside devices do; a subscriber on
//! Mosquitto timestamps every arrival, and latency is arrival minus the
//! reading's `ts` (set when it is published).
//!
//! - phase "quiet": the bystanders alone;
//! - phase "flood": the same, while one more enrolled device publishes
//!   QoS 1 telemetry as fast as its client can (window 64), and reconnects
//!   at once whenever the gateway cuts it off for exceeding its rate.
//!
//! The anomaly response stays at its default (`message_flood` alerts, no
//! quarantine), so the flood lasts the whole phase: what keeps the others
//! on time is the edge's per-device rate bucket (which a reconnect does not
//! refill) and the bounded per-session windows, not the detector. Goal:
//! the bystanders' p99 in the flood phase within 2x of the quiet phase.
//! Run with `cargo bench -p gateway --bench fairness`;
//! `WARDGATE_BENCH_SECONDS` sets each phase's length (default 20),
//! `WARDGATE_BENCH_ROUNDS` the number of quiet/flood rounds (default 3).

#![allow(missing_docs, clippy::cast_precision_loss)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use support::bench::{env_or, latency_ms, percentile, run_on_two_workers};
use support::ward::{wait_uplink_connected, Device, Upstream};
use wardgate_protocol::message::Telemetry;
use wardgate_tests::mosquitto::{Received, Subscriber};

const BYSTANDERS: usize = 20;
const INTERVAL: Duration = Duration::from_millis(100);

struct Phase {
    messages: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Latencies (ms) of the bystanders' messages with `seq` in `seqs`.
fn latencies(r: &Received, seqs: &std::ops::RangeInclusive<u64>) -> Vec<f64> {
    let mut lat: Vec<f64> = r
        .by_topic
        .iter()
        .filter(|(t, _)| t.contains("/bystander-") && t.ends_with("/telemetry"))
        .flat_map(|(t, v)| {
            let times = r.arrived_at.get(t).cloned().unwrap_or_default();
            v.iter().zip(times).filter_map(|(p, at)| {
                let m = Telemetry::from_json(p).ok()?;
                seqs.contains(&m.seq).then(|| latency_ms(m.ts, at))
            })
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    lat
}

async fn bystanders(
    devices: &[Device],
    seqs: std::ops::RangeInclusive<u64>,
    sub: &Subscriber,
) -> Result<Phase> {
    let mut tasks = Vec::new();
    for d in devices {
        let d = d.clone();
        let seqs = seqs.clone();
        tasks.push(tokio::spawn(
            async move { d.send_paced(seqs, INTERVAL).await },
        ));
    }
    for t in tasks {
        if let Some(e) = t.await?.error {
            bail!("bystander failed: {e}");
        }
    }
    let expected = devices.len() * seqs.clone().count();
    let snap = sub
        .wait_until(Duration::from_secs(60), |r| {
            latencies(r, &seqs).len() >= expected
        })
        .await;
    let lat = latencies(&snap, &seqs);
    if lat.len() < expected {
        bail!("{} of {expected} bystander messages arrived", lat.len());
    }
    Ok(Phase {
        messages: lat.len(),
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
    })
}

/// The flooder: as fast as its client allows, reconnecting at once when
/// cut off; returns (sessions, messages acknowledged).
fn flood(
    device: Device,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut sessions = 0u64;
        let mut base = 1u64;
        while !stop.load(Ordering::Relaxed) {
            sessions += 1;
            let live = Arc::new(Mutex::new(Vec::new()));
            let report = device.send(base..base + 10_000_000, 64, live).await;
            acked.fetch_add(report.acked.len() as u64, Ordering::Relaxed);
            // A fresh range: whatever it sent may have been accepted.
            base += 10_000_000;
        }
        sessions
    })
}

async fn run() -> Result<()> {
    let seconds: u64 = env_or("WARDGATE_BENCH_SECONDS", 20);
    let rounds: u32 = env_or("WARDGATE_BENCH_ROUNDS", 3);
    let per_phase = seconds * 1000 / INTERVAL.as_millis() as u64;
    let upstream = Upstream::start("wardgate/#").await?;
    let ward = upstream.ward("")?;
    let ids: Vec<String> = (0..BYSTANDERS)
        .map(|i| format!("bystander-{i:02}"))
        .collect();
    let idents: Vec<_> = ids
        .iter()
        .map(|id| ward.enroll(id))
        .collect::<Result<_>>()?;
    let flooder = ward.enroll("flooder-01")?;
    let mut config = ward.config()?;
    // The shipped defaults, not the test ward's unlimited rate.
    let defaults = gateway::config::EdgeConfig::default();
    config.edge.rate_per_second = defaults.rate_per_second;
    config.edge.rate_burst = defaults.rate_burst;
    let handle = gateway::app::Gateway::start(config).await?;
    wait_uplink_connected(&handle).await?;
    let devices: Vec<Device> = idents
        .iter()
        .map(|i| ward.device(i))
        .collect::<Result<_>>()?;

    // Warm-up (sessions open, outbox warm), not measured.
    let warm = 20;
    bystanders(&devices, 1..=warm, &upstream.sub).await?;
    println!(
        "fairness bench: {BYSTANDERS} bystanders at {} msg/s each, QoS 1, edge -> sealed outbox -> Mosquitto; {rounds} rounds of {seconds} s quiet then {seconds} s with one device flooding; edge rate limit {} msg/s, burst {} per device",
        1000 / INTERVAL.as_millis(),
        defaults.rate_per_second,
        defaults.rate_burst
    );
    // Quiet and flooded phases alternate, so that a noisy neighbour on a
    // shared machine hits both alike; the ratio is of the medians.
    let mut next = warm + 1;
    let mut quiet_p99 = Vec::new();
    let mut flood_p99 = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let refused_before = handle.context.metrics.edge.violation_count("rate_limit");
    let cooling_before = handle.context.metrics.edge.connection_count("cooling_off");
    let mut sessions = 0;
    for round in 1..=rounds {
        let quiet = bystanders(&devices, next..=next + per_phase - 1, &upstream.sub).await?;
        next += per_phase;
        stop.store(false, Ordering::Relaxed);
        let flood_task = flood(ward.device(&flooder)?, stop.clone(), acked.clone());
        // Let the flood reach its steady state first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let flooded = bystanders(&devices, next..=next + per_phase - 1, &upstream.sub).await?;
        next += per_phase;
        stop.store(true, Ordering::Relaxed);
        sessions += tokio::time::timeout(Duration::from_secs(60), flood_task)
            .await
            .map_or(0, |r| r.unwrap_or(0));
        for (name, p) in [("quiet", &quiet), ("one device flooding", &flooded)] {
            println!(
                "  round {round} {name:<20} bystanders p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({} msgs)",
                p.p50_ms, p.p99_ms, p.max_ms, p.messages
            );
        }
        quiet_p99.push(quiet.p99_ms);
        flood_p99.push(flooded.p99_ms);
    }
    let refused = handle.context.metrics.edge.violation_count("rate_limit") - refused_before;
    let cooling = handle.context.metrics.edge.connection_count("cooling_off") - cooling_before;
    handle.shutdown(Duration::from_secs(10)).await;
    upstream.sub.stop().await;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (q, f) = (median(&mut quiet_p99), median(&mut flood_p99));
    println!(
        "  flooder: {sessions} sessions, {} messages acknowledged, {refused} times cut off for its rate, {cooling} connections held off while cooling off",
        acked.load(Ordering::Relaxed)
    );
    println!(
        "  median p99: quiet {q:.2} ms, flooding {f:.2} ms; flood/quiet {:.2}x (goal: at most 2x)",
        f / q
    );
    Ok(())
}

fn main() -> Result<()> {
    run_on_two_workers(run())
}
