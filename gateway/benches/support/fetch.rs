//! The one download client both servers are measured with: `reqwest` over
//! `rustls` with the device's certificate (the same stack `device-sim`'s
//! OTA client downloads with), HTTP/1.1, the body streamed and counted,
//! not kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use device_sim::DeviceTls;
use futures::StreamExt;
use tokio::sync::Barrier;

/// A client presenting `tls`'s device certificate and trusting its CA.
pub fn client(tls: &DeviceTls) -> anyhow::Result<reqwest::Client> {
    let config = device_sim::client_config(tls)?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .http1_only()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()?)
}

/// GET `url` once, counting the body; fails unless it is `200` with
/// `expect` bytes.
pub async fn get(client: &reqwest::Client, url: &str, expect: u64) -> anyhow::Result<u64> {
    let r = client.get(url).send().await?;
    anyhow::ensure!(r.status() == 200, "GET {url}: {}", r.status());
    let mut n = 0u64;
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        n += chunk?.len() as u64;
    }
    anyhow::ensure!(n == expect, "GET {url}: {n} bytes, expected {expect}");
    Ok(n)
}

/// One measured round: every client (its own connection) downloads `url`
/// `reps` times, all starting together. Bytes and wall time.
pub async fn round(
    devices: &[DeviceTls],
    url: &str,
    reps: usize,
    expect: u64,
) -> anyhow::Result<(u64, Duration)> {
    let barrier = Arc::new(Barrier::new(devices.len() + 1));
    let mut tasks = Vec::new();
    for tls in devices {
        let c = client(tls)?;
        let (b, url) = (Arc::clone(&barrier), url.to_owned());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            let mut n = 0;
            for _ in 0..reps {
                n += get(&c, &url, expect).await?;
            }
            anyhow::Ok(n)
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total, start.elapsed()))
}
