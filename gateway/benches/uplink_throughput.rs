//! End-to-end throughput and latency of telemetry through the gateway's
//! durable uplink, against the same load sent straight to Mosquitto, in one
//! run.
//!
//! - baseline: D clients publish QoS 1 over TLS directly to a local
//!   Mosquitto (client certificates, `require_certificate true`);
//! - gateway: the same D clients publish to the gateway's edge (mutual TLS,
//!   policy checks), each message is committed to the sealed outbox (group
//!   commit, `synchronous = FULL`) before its PUBACK, and the bridge forwards
//!   it QoS 1 over TLS to the same Mosquitto.
//!
//! A subscriber on Mosquitto timestamps every arrival; latency is arrival
//! minus the device's `ts` (set when the message is queued by the client),
//! throughput is messages / (last arrival - start). Run with
//! `cargo bench -p gateway --bench uplink_throughput`; set
//! `WARDGATE_BENCH_DEVICES` / `WARDGATE_BENCH_MESSAGES` to change the load.

#![allow(missing_docs, clippy::cast_precision_loss)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use support::bench::{env_or, latency_ms, percentile, run_on_two_workers};
use support::ward::{tally, wait_uplink_connected, Device, Upstream};
use wardgate_protocol::message::Telemetry;
use wardgate_tests::mosquitto::{Received, Subscriber};

const WINDOW: usize = 16;

struct Figures {
    messages: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    duplicates: usize,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

/// Send `messages` from each device concurrently and measure arrivals on
/// topics starting with `prefix`.
async fn run_phase(
    sub: &Subscriber,
    devices: Vec<Device>,
    messages: u64,
    prefix: &str,
) -> Result<Figures> {
    let expected: Vec<(String, u64)> = devices
        .iter()
        .flat_map(|d| (1..=messages).map(|s| (d.id.clone(), s)))
        .collect();
    let start = Utc::now();
    let mut tasks = Vec::new();
    for d in devices {
        tasks.push(tokio::spawn(async move {
            d.send(1..=messages, WINDOW, Arc::new(Mutex::new(Vec::new())))
                .await
        }));
    }
    for t in tasks {
        let r = t.await?;
        if let Some(e) = r.error {
            bail!("device failed: {e}");
        }
    }
    let pick = |r: &Received| -> Vec<(String, u64, DateTime<Utc>, DateTime<Utc>)> {
        r.by_topic
            .iter()
            .filter(|(t, _)| t.starts_with(prefix))
            .flat_map(|(t, v)| {
                let device = t.rsplit('/').nth(1).unwrap_or_default().to_owned();
                let times = r.arrived_at.get(t).cloned().unwrap_or_default();
                v.iter()
                    .zip(times)
                    .filter_map(move |(p, at)| {
                        let m = Telemetry::from_json(p).ok()?;
                        Some((device.clone(), m.seq, m.ts, at))
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let snap = sub
        .wait_until(Duration::from_secs(300), |r| {
            let got: Vec<_> = pick(r).into_iter().map(|(d, s, _, _)| (d, s)).collect();
            tally(&expected, &got).0.is_empty()
        })
        .await;
    let arrivals = pick(&snap);
    let (missing, duplicates) = tally(
        &expected,
        &arrivals
            .iter()
            .map(|(d, s, _, _)| (d.clone(), *s))
            .collect::<Vec<_>>(),
    );
    if !missing.is_empty() {
        bail!("{} messages missing upstream", missing.len());
    }
    let last = arrivals.iter().map(|a| a.3).max().unwrap_or(start);
    let mut lat: Vec<f64> = arrivals
        .iter()
        .map(|(_, _, ts, at)| latency_ms(*ts, *at))
        .collect();
    lat.sort_by(f64::total_cmp);
    Ok(Figures {
        messages: expected.len(),
        seconds: ((last - start).num_microseconds().unwrap_or(1) as f64 / 1e6).max(1e-6),
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        duplicates,
    })
}

async fn run() -> Result<()> {
    let n_devices: usize = env_or("WARDGATE_BENCH_DEVICES", 8);
    let messages: u64 = env_or("WARDGATE_BENCH_MESSAGES", 500);
    let upstream = Upstream::start("#").await?;

    // Baseline: straight to Mosquitto.
    let direct_id = upstream.pki.client("bench-direct")?;
    let ids: Vec<String> = (0..n_devices)
        .map(|i| format!("bench-dev-{i:02}"))
        .collect();
    let direct: Vec<Device> = ids
        .iter()
        .map(|id| {
            Device::direct(
                id,
                &upstream.broker,
                &upstream.pki,
                &direct_id,
                format!("baseline/devices/{id}/telemetry"),
            )
        })
        .collect::<Result<_>>()?;
    let base = run_phase(&upstream.sub, direct, messages, "baseline/").await?;

    // Through the gateway.
    let ward = upstream.ward("")?;
    let idents: Vec<_> = ids
        .iter()
        .map(|id| ward.enroll(id))
        .collect::<Result<_>>()?;
    let handle = gateway::app::Gateway::start(ward.config()?).await?;
    wait_uplink_connected(&handle).await?;
    let devices: Vec<Device> = idents
        .iter()
        .map(|i| ward.device(i))
        .collect::<Result<_>>()?;
    let gw = run_phase(&upstream.sub, devices, messages, "wardgate/ward/").await?;
    let commits = handle
        .context
        .metrics
        .encode()
        .lines()
        .find_map(|l| {
            l.strip_prefix("wardgate_uplink_outbox_commits_total ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    handle.shutdown(Duration::from_secs(10)).await;
    upstream.sub.stop().await;

    println!(
        "uplink bench: {n_devices} devices x {messages} telemetry messages, window {WINDOW}, QoS 1, TLS on every hop"
    );
    for (name, f) in [
        ("direct -> mosquitto", &base),
        ("device -> gateway (edge + sealed outbox) -> mosquitto", &gw),
    ] {
        println!(
            "  {name:<56} {:>8.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({} msgs in {:.2} s, duplicates {})",
            f.rate(),
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            f.messages,
            f.seconds,
            f.duplicates
        );
    }
    println!(
        "  ratio gateway/direct: throughput {:.2}x, p99 latency {:.2}x; outbox commits for {} messages + acks: {commits}",
        gw.rate() / base.rate(),
        gw.p99_ms / base.p99_ms,
        gw.messages
    );
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // special: in both cases run once.
    run_on_two_workers(run())
}
