//! Edge throughput: QoS 1 telemetry from 100 devices through the mTLS edge
//! (policy, schema, replay and rate checks) versus the same load straight
//! into the bare embedded `rumqttd` (served over plain loopback TCP), in one
//! run.
//!
//! Prints messages/s and p50/p99 publish-to-subscriber latency for both and
//! their ratio. `WARDGATE_BENCH_DEVICES` / `WARDGATE_BENCH_MSGS` (per
//! device) change the load. Run: `cargo bench -p gateway --bench edge_throughput`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use device_sim::VitalsGenerator;
use gateway::broker::MqttVersion;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use support::TestGateway;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;
use wardgate_protocol::{topic, DeviceId, Telemetry, TopicKind, SCHEMA_VERSION};

struct RunResult {
    msgs: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Collect `expected` messages from a local-link subscriber; latency from
/// the payload's `ts` to arrival.
fn collector(gw: &TestGateway, name: &str, expected: usize) -> JoinHandle<(Vec<u64>, Instant)> {
    let mut sub = gw.subscriber(name, "wardgate/v1/devices/+/telemetry");
    tokio::spawn(async move {
        let mut lat = Vec::with_capacity(expected);
        while lat.len() < expected {
            let Some((_, payload)) = sub.next(Duration::from_secs(30)).await else {
                break;
            };
            if let Ok(t) = Telemetry::from_json(&payload) {
                let us = (Utc::now() - t.ts).num_microseconds().unwrap_or(0).max(0);
                lat.push(us as u64);
            }
        }
        (lat, Instant::now())
    })
}

/// Release the senders waiting on `barrier` all at once and time until
/// `collect` has every message. What the sender tasks return (their
/// sessions) is held until then, so that no disconnect races the last
/// deliveries.
async fn timed_run<T>(
    barrier: &Barrier,
    collect: JoinHandle<(Vec<u64>, Instant)>,
    tasks: Vec<JoinHandle<T>>,
) -> RunResult {
    barrier.wait().await;
    let start = Instant::now();
    let (lat, end) = collect.await.unwrap();
    let mut keep = Vec::new();
    for t in tasks {
        keep.push(t.await.unwrap());
    }
    RunResult {
        msgs: lat.len(),
        elapsed: end - start,
        latencies_us: lat,
    }
}

async fn through_edge(gw: &TestGateway, devices: usize, per: usize, pass: &str) -> RunResult {
    let mut devs = Vec::new();
    for i in 0..devices {
        devs.push(gw.device(&format!("bench-edge-{pass}-{i:03}")).await);
    }
    let collect = collector(gw, &format!("bench.edge.{pass}"), devices * per);
    let barrier = Arc::new(Barrier::new(devices + 1));
    let mut tasks = Vec::new();
    for (i, mut d) in devs.into_iter().enumerate() {
        let b = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut v = VitalsGenerator::new(i as u64);
            b.wait().await;
            for _ in 0..per {
                d.publish_telemetry(v.next_readings()).await.unwrap();
            }
            // Keep the session until everything is acknowledged.
            let mut acks = 0;
            while acks < per {
                match d.next_event(Duration::from_secs(30)).await {
                    Ok(device_sim::DeviceEvent::PubAck(_)) => acks += 1,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            d
        }));
    }
    timed_run(&barrier, collect, tasks).await
}

/// A loopback TCP listener whose connections the gateway's broker serves
/// as it serves the edge's in-process ones: the bare broker, no edge.
async fn bare_listener(gw: &TestGateway) -> u16 {
    let broker = gw.handle().broker.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            broker.serve(MqttVersion::V4, stream);
        }
    });
    port
}

async fn bare_broker(gw: &TestGateway, devices: usize, per: usize, pass: &str) -> RunResult {
    let port = bare_listener(gw).await;
    let collect = collector(gw, &format!("bench.bare.{pass}"), devices * per);
    let barrier = Arc::new(Barrier::new(devices + 1));
    let mut tasks = Vec::new();
    for i in 0..devices {
        let b = barrier.clone();
        let pass = pass.to_owned();
        tasks.push(tokio::spawn(async move {
            let id = DeviceId::parse(&format!("bench-bare-{pass}-{i:03}")).unwrap();
            let mut opts = MqttOptions::new(id.to_string(), "127.0.0.1", port);
            opts.set_keep_alive(Duration::from_secs(30));
            let (client, mut ev) = AsyncClient::new(opts, 256);
            let acks = tokio::spawn(async move {
                let mut n = 0;
                while n < per {
                    match ev.poll().await {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => n += 1,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                ev
            });
            let mut v = VitalsGenerator::new(i as u64);
            b.wait().await;
            for seq in 1..=per as u64 {
                let t = Telemetry {
                    schema: SCHEMA_VERSION,
                    seq,
                    ts: Utc::now(),
                    readings: v.next_readings(),
                };
                client
                    .publish(
                        topic(&id, TopicKind::Telemetry),
                        QoS::AtLeastOnce,
                        false,
                        serde_json::to_vec(&t).unwrap(),
                    )
                    .await
                    .unwrap();
            }
            (client, acks.await.unwrap())
        }));
    }
    timed_run(&barrier, collect, tasks).await
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --benches` only
    // check that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let devices = env("WARDGATE_BENCH_DEVICES", 100);
    let per = env("WARDGATE_BENCH_MSGS", 300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let gw = TestGateway::start_with(|c| {
            c.edge.rate_per_second = 1.0e6;
            c.edge.rate_burst = 1_000_000;
        })
        .await;
        // Warm-up pass of each (connections, allocations, JIT-free but
        // cache-cold), then the measured pass.
        let _ = bare_broker(&gw, devices, per / 10 + 1, "warm").await;
        let _ = through_edge(&gw, devices, per / 10 + 1, "warm").await;
        let bare = bare_broker(&gw, devices, per, "run").await;
        let edge = through_edge(&gw, devices, per, "run").await;
        println!("edge_throughput: {devices} devices x {per} QoS 1 telemetry messages");
        for (name, r) in [("bare rumqttd (loopback TCP)", &bare), ("through edge (mTLS + policy)", &edge)] {
            println!(
                "  {name:<30} {:>6} msgs in {:>7.3}s = {:>9.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
                r.msgs,
                r.elapsed.as_secs_f64(),
                r.rate(),
                r.pct(0.50),
                r.pct(0.99)
            );
        }
        println!(
            "  ratio edge/bare: throughput {:.2}x, p50 latency {:.2}x, p99 latency {:.2}x",
            edge.rate() / bare.rate(),
            edge.pct(0.50) / bare.pct(0.50),
            edge.pct(0.99) / bare.pct(0.99)
        );
        if edge.msgs != devices * per || bare.msgs != devices * per {
            eprintln!("{}", gw.handle().context.metrics.encode());
        }
        assert_eq!(edge.msgs, devices * per, "every message arrived through the edge");
    });
}
