//! Load mode: what a fleet run measured, for `device-sim --duration` or
//! `--count` without updates: messages acknowledged, throughput, and the
//! PUBACK latency percentiles (publish to the gateway's acknowledgement,
//! which the gateway sends only once the reading is stored).
//!
//! Latencies are kept in a bounded reservoir ([`MAX_SAMPLES`]), so a long
//! run at a high rate measures with a fixed amount of memory.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;

/// Most latency samples kept (uniform reservoir beyond that).
pub const MAX_SAMPLES: usize = 200_000;

#[derive(Debug, Default)]
struct Samples {
    kept: Vec<u32>,
    seen: u64,
}

/// Latencies recorded by every device of a fleet.
#[derive(Debug, Default)]
pub struct LoadStats {
    samples: Mutex<Samples>,
}

impl LoadStats {
    /// Record one acknowledged message's publish-to-PUBACK time.
    pub fn record(&self, latency: Duration) {
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        let mut s = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        s.seen += 1;
        if s.kept.len() < MAX_SAMPLES {
            s.kept.push(micros);
        } else {
            // Algorithm R: each of the `seen` samples stays with equal odds.
            let j = rand::thread_rng().gen_range(0..s.seen);
            if let Ok(j) = usize::try_from(j) {
                if j < MAX_SAMPLES {
                    s.kept[j] = micros;
                }
            }
        }
    }

    /// The report for `devices` devices over `elapsed`.
    #[must_use]
    pub fn report(&self, devices: usize, elapsed: Duration) -> LoadReport {
        let s = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let mut sorted = s.kept.clone();
        sorted.sort_unstable();
        let pct = |p: f64| -> Duration {
            if sorted.is_empty() {
                return Duration::ZERO;
            }
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
            Duration::from_micros(u64::from(sorted[rank.min(sorted.len() - 1)]))
        };
        LoadReport {
            devices,
            messages: s.seen,
            elapsed,
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            max: sorted
                .last()
                .map_or(Duration::ZERO, |m| Duration::from_micros(u64::from(*m))),
        }
    }
}

/// What a load run measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Devices in the fleet.
    pub devices: usize,
    /// Messages acknowledged by the gateway.
    pub messages: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// PUBACK latency percentiles.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl LoadReport {
    /// Messages per second over the run.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn throughput(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "load: {} devices, {} messages acknowledged in {:.1} s: {:.0} msg/s; PUBACK latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.devices,
            self.messages,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_throughput_of_known_latencies() {
        let stats = LoadStats::default();
        for ms in 1..=100 {
            stats.record(Duration::from_millis(ms));
        }
        let r = stats.report(4, Duration::from_secs(10));
        assert_eq!(r.messages, 100);
        assert!((r.throughput() - 10.0).abs() < 1e-9);
        assert_eq!(r.p50, Duration::from_millis(51));
        assert_eq!(r.p99, Duration::from_millis(99));
        assert_eq!(r.max, Duration::from_millis(100));
        assert!(r.to_string().contains("4 devices, 100 messages"), "{r}");
    }

    #[test]
    fn the_reservoir_stays_bounded() {
        let stats = LoadStats::default();
        for _ in 0..(MAX_SAMPLES + 1000) {
            stats.record(Duration::from_micros(5));
        }
        let r = stats.report(1, Duration::from_secs(1));
        assert_eq!(r.messages, (MAX_SAMPLES + 1000) as u64);
        assert_eq!(
            stats.samples.lock().unwrap().kept.len(),
            MAX_SAMPLES,
            "bounded memory"
        );
    }
}
