//! The OTA agent's Prometheus families (`wardgate_ota_*`), registered once
//! into the gateway's shared registry and shared by the TUF client and the
//! image cache.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{CounterBy, Metrics};

/// Counters and gauges of the TUF client and the image cache. Cheap to
/// clone (each family is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct OtaMetrics {
    /// `wardgate_ota_refresh_total{outcome}`: TUF refreshes by outcome
    /// (`ok`, or the refusal class: `expired`, `rollback`, `bad_signature`,
    /// `tampered`, `outside_delegation`, `unreachable`, ...).
    pub refresh: CounterBy,
    /// `wardgate_ota_metadata_expiry_timestamp_seconds`: Unix time at which
    /// the first loaded role expires (0 when nothing is loaded). Alert when
    /// it nears `time()`.
    pub metadata_expiry: Gauge,
    /// `wardgate_ota_image_downloads_total{outcome}`: image downloads from
    /// the OTA server (`complete`, `interrupted`, `refused`).
    pub downloads: CounterBy,
    /// `wardgate_ota_image_received_bytes_total`: image bytes received from
    /// the OTA server (central egress of this ward).
    pub received_bytes: Counter,
    /// `wardgate_ota_image_corrupt_total`: cached or downloaded images that
    /// failed their SHA-256 check and were deleted.
    pub corrupt: Counter,
    /// `wardgate_ota_cached_images`: complete verified images in the cache.
    pub cached_images: Gauge,
}

/// Unregistered families (for tests of one component); a gateway uses
/// [`OtaMetrics::register`].
impl Default for OtaMetrics {
    fn default() -> Self {
        Self {
            refresh: CounterBy::new("outcome"),
            metadata_expiry: Gauge::default(),
            downloads: CounterBy::new("outcome"),
            received_bytes: Counter::default(),
            corrupt: Counter::default(),
            cached_images: Gauge::default(),
        }
    }
}

impl OtaMetrics {
    /// Fresh families, registered into `metrics`. Call once per gateway.
    #[must_use]
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self::default();
        metrics.register(
            "wardgate_ota_refresh",
            "TUF metadata refreshes by outcome (ok or the reason for refusal)",
            m.refresh.clone(),
        );
        metrics.register(
            "wardgate_ota_metadata_expiry_timestamp_seconds",
            "Unix time at which the first loaded TUF role expires (0: none loaded)",
            m.metadata_expiry.clone(),
        );
        metrics.register(
            "wardgate_ota_image_downloads",
            "Image downloads from the OTA server by outcome",
            m.downloads.clone(),
        );
        metrics.register(
            "wardgate_ota_image_received_bytes",
            "Image bytes received from the OTA server",
            m.received_bytes.clone(),
        );
        metrics.register(
            "wardgate_ota_image_corrupt",
            "Images that failed their SHA-256 check and were deleted",
            m.corrupt.clone(),
        );
        metrics.register(
            "wardgate_ota_cached_images",
            "Complete, verified images in the ward's image cache",
            m.cached_images.clone(),
        );
        m
    }

    /// Current value of `wardgate_ota_refresh_total{outcome}`.
    #[must_use]
    pub fn refresh_count(&self, outcome: &str) -> u64 {
        self.refresh.get(outcome)
    }

    /// Current value of `wardgate_ota_image_downloads_total{outcome}`.
    #[must_use]
    pub fn download_count(&self, outcome: &str) -> u64 {
        self.downloads.get(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_exposed() {
        let registry = Metrics::new();
        let m = OtaMetrics::register(&registry);
        m.refresh.inc("expired");
        m.downloads.inc("complete");
        m.received_bytes.inc_by(10);
        let text = registry.encode();
        assert!(
            text.contains("wardgate_ota_refresh_total{outcome=\"expired\"} 1"),
            "{text}"
        );
        assert!(text.contains("wardgate_ota_image_received_bytes_total 10"));
        assert_eq!(m.refresh_count("expired"), 1);
        assert_eq!(m.download_count("complete"), 1);
    }
}
