//! What the uplink benchmarks (`benches/uplink_throughput.rs`,
//! `benches/fairness.rs`) measure and run with, so that both report
//! figures computed the same way: settings from the environment, the
//! latency of an arrival upstream, percentiles, and the two-worker runtime
//! (the size of the test machine) they run on.

use std::future::Future;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// `name` from the environment, or `default` when unset or not a `T`.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds from a message's device time `ts` to its arrival `at`.
#[allow(clippy::cast_precision_loss)]
pub fn latency_ms(ts: DateTime<Utc>, at: DateTime<Utc>) -> f64 {
    (at - ts).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// The `p`th percentile (0 to 100) of `sorted`, nearest rank; NaN when
/// empty.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Run a benchmark once on a multi-threaded runtime with two workers
/// (`cargo bench` and `cargo test --benches` alike).
///
/// # Errors
/// When the runtime cannot be built, or as `bench` fails.
pub fn run_on_two_workers(bench: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(bench)
}
