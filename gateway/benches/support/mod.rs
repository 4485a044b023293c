//! Shared setup of the OTA benchmarks, so each bench binary holds only its
//! measurement: the baseline nginx ([`nginx`]), CPU time read from `/proc`
//! ([`cpu`]), the one HTTPS download client both servers are measured with
//! ([`fetch`]), and a ward whose devices hold open offers ([`offers`]).
//!
//! Built on the gateway's test harness (`tests/support`, `tests/ota_support`,
//! `tests/ota_rollout_support`), which each bench declares at its crate root
//! because those modules name each other as `crate::...`.
#![allow(dead_code, missing_docs, clippy::missing_panics_doc)]

pub mod cpu;
pub mod fetch;
pub mod nginx;
pub mod offers;

/// `name` from the environment as a number, or `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `name` from the environment as a comma-separated list, or `default`.
pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

/// The median of `v` (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Bytes as MiB.
pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}
