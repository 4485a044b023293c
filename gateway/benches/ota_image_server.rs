//! OTA image server throughput: the gateway's image server for devices
//! (mutual TLS with the ward CA, only offered images, bounded) against
//! Debian's nginx serving the same file over TLS with `ssl_verify_client
//! on`, in one run, on the same machine, with the same client.
//!
//! A ward is started in-process (OTA server, gateway with its rollout); a
//! campaign offers the image to every device, then 8 and 32 device clients
//! (each its own mTLS connection) download the 16 MiB image at once from
//! each server, rounds interleaved; the median MiB/s of each, their ratio
//! and each server's CPU are printed. The gateway runs on its own tokio
//! runtime (threads `gw-server*`, two workers), the clients on another
//! (`bench-client*`), nginx with as many workers.
//!
//! Needs nginx: `scripts/setup-bench-deps`. Knobs: `WARDGATE_BENCH_IMAGE_MIB`
//! (16), `WARDGATE_BENCH_CLIENTS` (`8,32`), `WARDGATE_BENCH_ROUNDS` (5),
//! `WARDGATE_BENCH_REPS` (downloads per client per round, 1),
//! `WARDGATE_BENCH_WORKERS` (server threads / nginx workers, 2).
//! Run: `cargo bench -p gateway --bench ota_image_server`.

#[path = "../tests/ota_rollout_support/mod.rs"]
mod ota_rollout_support;
#[path = "../tests/ota_support/mod.rs"]
mod ota_support;
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "support/mod.rs"]
mod bench;

use std::time::Duration;

use anyhow::Context as _;
use bench::cpu::Probe;
use bench::nginx::Nginx;
use ota_rollout_support::{rollout_config, Ward};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// One side's figures over the rounds.
#[derive(Default)]
struct Side {
    mib_s: Vec<f64>,
    cpu_pct: Vec<f64>,
}

async fn measure(
    devices: &[device_sim::DeviceTls],
    url: &str,
    reps: usize,
    len: u64,
    probe: &Probe,
    side: &mut Side,
) -> anyhow::Result<()> {
    let cpu0 = probe.cpu();
    let (bytes, wall) = bench::fetch::round(devices, url, reps, len).await?;
    let cpu = probe.cpu().saturating_sub(cpu0);
    side.mib_s
        .push(bench::mib(bytes as f64) / wall.as_secs_f64());
    side.cpu_pct
        .push(100.0 * cpu.as_secs_f64() / wall.as_secs_f64());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; under `cargo test --benches` only
    // check that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let image_mib = bench::env("WARDGATE_BENCH_IMAGE_MIB", 16);
    let client_counts = bench::env_list("WARDGATE_BENCH_CLIENTS", &[8, 32]);
    let rounds = bench::env("WARDGATE_BENCH_ROUNDS", 5).max(1);
    let reps = bench::env("WARDGATE_BENCH_REPS", 1).max(1);
    let workers = bench::env("WARDGATE_BENCH_WORKERS", 2).max(1);
    let most = client_counts.iter().copied().max().unwrap_or(8);

    let gw_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("gw-server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("bench-client")
        .enable_all()
        .build()?;

    let image = ota_support::image(image_mib << 20, 7);
    let len = image.len() as u64;
    let sha = ota_support::sha256_hex(&image);
    let stop = CancellationToken::new();
    let mut config = rollout_config();
    config.image_max_downloads = most;
    // The devices download by hand and never report: keep their offers open.
    config.device_offer_timeout = Duration::from_secs(24 * 3600);
    config.device_download_timeout = Duration::from_secs(24 * 3600);
    config.assignments_interval = Duration::from_secs(30);
    config.tick_interval = Duration::from_secs(5);
    println!("ota_image_server: starting a ward ({image_mib} MiB image, {most} offered devices)");
    let (ward, devices, gw_url) = gw_rt.block_on(async {
        let ward = Ward::start(&image, config).await;
        let (devices, url) =
            bench::offers::offered_devices(&ward, "bench-pump", most, &stop).await?;
        anyhow::Ok((ward, devices, url))
    })?;
    let nginx = Nginx::start(&ward.pki, &image, &sha, workers)?;
    let ng_url = nginx.url(&sha);

    // Both serve the image itself, to the same client, before any timing.
    client_rt
        .block_on(async {
            for url in [&gw_url, &ng_url] {
                let c = bench::fetch::client(&devices[0])?;
                let body = c
                    .get(url.as_str())
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                anyhow::ensure!(
                    hex::encode(Sha256::digest(&body)) == sha,
                    "{url} served something other than the image"
                );
            }
            anyhow::Ok(())
        })
        .context("checking what each server serves")?;

    let gw_probe = Probe::Threads("gw-server".into());
    let ng_probe = Probe::ProcessTree(nginx.pid());
    println!(
        "ota_image_server: {image_mib} MiB image over mutual TLS, {rounds} rounds each, {reps} download(s) per client per round, {workers} server threads / nginx workers"
    );
    println!(
        "{:>8} {:>16} {:>16} {:>8} {:>14} {:>14}",
        "clients", "gateway MiB/s", "nginx MiB/s", "ratio", "gateway CPU%", "nginx CPU%"
    );
    for &n in &client_counts {
        let devs = &devices[..n.min(devices.len())];
        let (mut gw, mut ng) = (Side::default(), Side::default());
        client_rt.block_on(async {
            // One warm-up download each (page cache, allocator), not counted.
            bench::fetch::round(&devs[..1], &gw_url, 1, len).await?;
            bench::fetch::round(&devs[..1], &ng_url, 1, len).await?;
            for r in 0..rounds {
                // Interleaved, alternating who goes first.
                if r % 2 == 0 {
                    measure(devs, &gw_url, reps, len, &gw_probe, &mut gw).await?;
                    measure(devs, &ng_url, reps, len, &ng_probe, &mut ng).await?;
                } else {
                    measure(devs, &ng_url, reps, len, &ng_probe, &mut ng).await?;
                    measure(devs, &gw_url, reps, len, &gw_probe, &mut gw).await?;
                }
            }
            anyhow::Ok(())
        })?;
        let (g, x) = (bench::median(&gw.mib_s), bench::median(&ng.mib_s));
        println!(
            "{n:>8} {g:>16.1} {x:>16.1} {:>7.2}x {:>14.0} {:>14.0}",
            g / x,
            bench::median(&gw.cpu_pct),
            bench::median(&ng.cpu_pct)
        );
        println!(
            "         rounds: gateway {:?}, nginx {:?}",
            gw.mib_s.iter().copied().map(f64::round).collect::<Vec<_>>(),
            ng.mib_s.iter().copied().map(f64::round).collect::<Vec<_>>()
        );
    }
    stop.cancel();
    drop(nginx);
    gw_rt.block_on(async move { drop(ward) });
    Ok(())
}
