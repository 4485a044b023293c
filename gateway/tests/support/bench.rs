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

/// The median of `v` (sorted in place); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Wait up to `limit` until `sub` has recorded at least `expected`
/// payloads on topics for which `topic` holds, without copying what it
/// holds (a snapshot of tens of thousands of payloads on every poll would
/// take the CPU the benchmark measures); true if they arrived. When a
/// subscriber records arrival times, the time of the last one is read from
/// them afterwards, so how often this polls does not change any figure.
pub async fn wait_count(
    sub: &wardgate_tests::mosquitto::Subscriber,
    topic: impl Fn(&str) -> bool,
    expected: usize,
    limit: std::time::Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n: usize = sub.received.lock().map_or(0, |r| {
            r.counts
                .iter()
                .filter(|(t, _)| topic(t))
                .map(|(_, n)| n)
                .sum()
        });
        if n >= expected {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// What `sub` recorded so far, leaving it empty for the next phase.
pub fn take_received(
    sub: &wardgate_tests::mosquitto::Subscriber,
) -> wardgate_tests::mosquitto::Received {
    sub.received
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default()
}
