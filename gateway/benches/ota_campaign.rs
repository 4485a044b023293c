//! OTA campaign time: from campaign start to every device healthy, for 100
//! simulated devices and a 16 MiB image, on one ward in-process over real
//! TLS sockets: `ota-server` with a manufacturer's signed release, the
//! gateway with its TUF client, image cache, rollout and image server, and
//! `device-sim`'s OTA client per device (verify the offer, download over
//! mutual TLS into the idle slot, check, switch, reboot, self-test, report).
//!
//! Prints the total time, when each wave was handed out and when its last
//! device was healthy, and the image bytes `ota-server` sent (central
//! egress) against the bytes the gateway's image server sent to devices.
//! Knobs: `WARDGATE_BENCH_DEVICES` (100), `WARDGATE_BENCH_IMAGE_MIB` (16),
//! `WARDGATE_BENCH_WAVES` (`1,25%,100%`), `WARDGATE_BENCH_HEALTH_WINDOW_S`
//! (60: `device_sim::ota::DEFAULT_HEALTH_WINDOW`, what a device gets
//! outside tests; the self-test hashes the 16 MiB slot, and 100 devices
//! doing that at once on a loaded 2-core machine take well over the tests'
//! 10 s, which made the bench fail with a rollback). The rollout runs with the test
//! harness's short polling intervals (assignments every 1 s, ticks every
//! 500 ms) and the default image server bounds (16 downloads at once; the
//! rest wait with `Retry-After`).
//! Run: `cargo bench -p gateway --bench ota_campaign`.

#[path = "../tests/ota_rollout_support/mod.rs"]
mod ota_rollout_support;
#[path = "../tests/ota_support/mod.rs"]
mod ota_support;
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "support/mod.rs"]
mod bench;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use device_sim::ota::Faults;
use gateway::ota::device_state::UpdateState;
use ota_rollout_support::{rollout_config, Ward};

/// When a wave was first seen handed out and when its last device was
/// seen healthy (since campaign start).
#[derive(Debug, Default, Clone, Copy)]
struct Wave {
    devices: usize,
    healthy: usize,
    assigned_at: Option<Duration>,
    done_at: Option<Duration>,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; under `cargo test --benches` only
    // check that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let n = bench::env("WARDGATE_BENCH_DEVICES", 100).max(1);
    let image_mib = bench::env("WARDGATE_BENCH_IMAGE_MIB", 16);
    let waves_text = std::env::var("WARDGATE_BENCH_WAVES").unwrap_or_else(|_| "1,25%,100%".into());
    let waves: Vec<&str> = waves_text.split(',').map(str::trim).collect();
    let default_window = usize::try_from(device_sim::ota::DEFAULT_HEALTH_WINDOW.as_secs())?;
    let health_window = Duration::from_secs(u64::try_from(bench::env(
        "WARDGATE_BENCH_HEALTH_WINDOW_S",
        default_window,
    ))?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let image = ota_support::image(image_mib << 20, 11);
        let config = rollout_config();
        let max_downloads = config.image_max_downloads;
        let mut w = Ward::start(&image, config).await;
        w.device_health_window = health_window;
        let ids: Vec<String> = (0..n).map(|i| format!("pump-{i:03}")).collect();
        for id in &ids {
            let tls = w.enroll(id);
            w.run_device(id, &tls, Faults::default());
        }
        // Every device connected and idle before the clock starts.
        let seen = wardgate_tests::wait::wait_for(Duration::from_secs(120), || {
            let s = w.rollout().states().statuses().ok()?;
            (s.len() >= n).then_some(())
        })
        .await;
        anyhow::ensure!(seen.is_some(), "not every device reported its status in 2 minutes");
        println!(
            "ota_campaign: {n} devices, {image_mib} MiB image, waves {waves:?}, image server at most {max_downloads} downloads at once, device health window {} s",
            health_window.as_secs()
        );

        let start = Instant::now();
        let campaign = w.campaign(&waves, 50.0).await;
        let mut per_wave: BTreeMap<u32, Wave> = BTreeMap::new();
        let deadline = Duration::from_secs(1800);
        let total = loop {
            let now = start.elapsed();
            anyhow::ensure!(now < deadline, "the campaign did not complete in {deadline:?}: {:#?}", w.status());
            let status = w.status();
            let Some(c) = status.campaigns.iter().find(|c| c.campaign_id == campaign) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let mut seen: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
            for d in &c.devices {
                anyhow::ensure!(
                    !matches!(d.state, UpdateState::Failed | UpdateState::RolledBack),
                    "{} ended {:?}: {}",
                    d.device_id,
                    d.state,
                    d.detail
                );
                let e = seen.entry(d.wave).or_default();
                e.0 += 1;
                if d.state == UpdateState::Healthy && d.reported {
                    e.1 += 1;
                }
            }
            for (wave, (devices, healthy)) in seen {
                let e = per_wave.entry(wave).or_default();
                e.assigned_at.get_or_insert(now);
                e.devices = devices;
                e.healthy = healthy;
                if healthy == devices && e.done_at.is_none() {
                    e.done_at = Some(now);
                }
            }
            let healthy: usize = per_wave.values().map(|v| v.healthy).sum();
            if healthy >= n {
                break now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };

        let central = w.server.settled_sent_bytes().await;
        let served = w.metric("wardgate_ota_image_bytes_served_total");
        println!("total: campaign start to all {n} devices healthy in {:.1} s", total.as_secs_f64());
        let mut prev_done = Duration::ZERO;
        for (wave, v) in &per_wave {
            let (a, d) = (v.assigned_at.unwrap_or_default(), v.done_at.unwrap_or_default());
            println!(
                "wave {wave}: {:>3} devices, handed out at {:>6.1} s, all healthy at {:>6.1} s ({:.1} s after the wave before it)",
                v.devices,
                a.as_secs_f64(),
                d.as_secs_f64(),
                d.saturating_sub(prev_done).as_secs_f64()
            );
            prev_done = d;
        }
        let one = image.len() as f64;
        println!(
            "bytes: ota-server sent {:.1} MiB ({:.2} images); the gateway's image server sent {:.1} MiB ({:.2} images, {:.1} MiB/s over the campaign)",
            bench::mib(central),
            central / one,
            bench::mib(served),
            served / one,
            bench::mib(served) / total.as_secs_f64()
        );
        let st = w.server_campaign(&campaign).await;
        println!("ota-server campaign state: {}", st["state"]);
        anyhow::Ok(())
    })
}
