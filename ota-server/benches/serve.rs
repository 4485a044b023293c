//! Serving throughput of the OTA server over real HTTPS on 127.0.0.1:
//! metadata (`timestamp.json`, from memory) and a 1 MiB target (from disk),
//! first with one sequential client (the baseline), then with 100
//! concurrent clients, each on its own TLS connection (connections are
//! opened first and timed separately, then reused). Prints requests/s,
//! MiB/s and the ratio to the baseline. Server and clients share the
//! machine's cores, so figures are a lower bound.
//!
//! Run: `cargo bench -p ota-server --bench serve`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

const CLIENTS: usize = 100;
const META_PER_CLIENT: usize = 40;
const TARGETS_PER_CLIENT: usize = 2;
const IMAGE_BYTES: usize = 1024 * 1024;

struct Figure {
    requests: usize,
    bytes: u64,
    elapsed: Duration,
}

impl Figure {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn mibps(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64()
    }
}

async fn run(clients: Vec<reqwest::Client>, url: String, per_client: usize) -> Figure {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            for _ in 0..per_client {
                let r = c.get(&url).send().await.expect("request failed");
                assert!(r.status().is_success(), "status {}", r.status());
                bytes += r.bytes().await.expect("body failed").len() as u64;
            }
            bytes
        }));
    }
    let mut bytes = 0;
    let n = tasks.len();
    for t in tasks {
        bytes += t.await.expect("client task panicked");
    }
    Figure {
        requests: n * per_client,
        bytes,
        elapsed: start.elapsed(),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut h = support::Harness::new(support::Opts {
            max_upload_bytes: 64 * 1024 * 1024,
            ..support::Opts::default()
        })
        .await;
        h.start().await;
        let image: Vec<u8> = (0..IMAGE_BYTES).map(|i| (i % 251) as u8).collect();
        h.publish_acme("bench-1.0.0.bin", "1.0.0", &image).await;
        let meta_url = format!("{}/metadata/timestamp.json", h.base_url());
        let target_url = h.acme_target_url("bench-1.0.0.bin", &image);

        // Warm up one connection, then the single-client baseline.
        let one = vec![h.client()];
        run(one.clone(), meta_url.clone(), 20).await;
        let base_meta = run(one.clone(), meta_url.clone(), CLIENTS * META_PER_CLIENT / 10).await;
        let base_target = run(one, target_url.clone(), CLIENTS * TARGETS_PER_CLIENT / 10).await;

        let many: Vec<reqwest::Client> = (0..CLIENTS).map(|_| h.client()).collect();
        // First request of each client: 100 TLS handshakes at once.
        let cold = run(many.clone(), meta_url.clone(), 1).await;
        let conc_meta = run(many.clone(), meta_url, META_PER_CLIENT).await;
        let conc_target = run(many, target_url, TARGETS_PER_CLIENT).await;

        println!("ota-server serving throughput (HTTPS, 127.0.0.1, server and clients in one process)");
        println!(
            "metadata  1 client : {:>8.0} req/s  ({} requests in {:.2?})",
            base_meta.rps(),
            base_meta.requests,
            base_meta.elapsed
        );
        println!(
            "connect  {CLIENTS} clients: {:>8.0} new TLS connections+requests/s ({:.2?} for all)",
            cold.rps(),
            cold.elapsed
        );
        println!(
            "metadata {CLIENTS} clients: {:>8.0} req/s  ({} requests in {:.2?})  x{:.2} vs 1 client",
            conc_meta.rps(),
            conc_meta.requests,
            conc_meta.elapsed,
            conc_meta.rps() / base_meta.rps()
        );
        println!(
            "target    1 client : {:>8.1} MiB/s {:>6.1} req/s ({} x 1 MiB in {:.2?})",
            base_target.mibps(),
            base_target.rps(),
            base_target.requests,
            base_target.elapsed
        );
        println!(
            "target  {CLIENTS} clients: {:>8.1} MiB/s {:>6.1} req/s ({} x 1 MiB in {:.2?})  x{:.2} vs 1 client",
            conc_target.mibps(),
            conc_target.rps(),
            conc_target.requests,
            conc_target.elapsed,
            conc_target.mibps() / base_target.mibps()
        );
        h.stop().await;
    });
}
