//! Prometheus metrics, named `wardgate_ota_<what>_<unit>` and exposed on
//! `/metrics` in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of an HTTP request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Matched route pattern (never the raw path, to bound cardinality).
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels carrying a stable refusal code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// Stable error code (as in JSON errors).
    pub code: String,
}

/// All server metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub http_requests: Family<RouteLabels, Counter>,
    /// Releases published.
    pub releases_published: Counter,
    /// Uploads and API requests refused, by code.
    pub refusals: Family<CodeLabels, Counter>,
    /// Image bytes sent to clients.
    pub target_bytes_sent: Counter,
    /// Timestamp re-signings.
    pub timestamp_refreshes: Counter,
    /// Failed timestamp re-signings.
    pub timestamp_refresh_failures: Counter,
    /// Unix time at which the served timestamp.json expires.
    pub timestamp_expiry_seconds: Gauge,
    /// Gateway results recorded.
    pub gateway_results: Family<CodeLabels, Counter>,
    /// TLS handshakes that failed (bad or untrusted client certificates,
    /// plain HTTP, timeouts).
    pub tls_handshake_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<RouteLabels, Counter>::default();
        let releases_published = Counter::default();
        let refusals = Family::<CodeLabels, Counter>::default();
        let target_bytes_sent = Counter::default();
        let timestamp_refreshes = Counter::default();
        let timestamp_refresh_failures = Counter::default();
        let timestamp_expiry_seconds = Gauge::default();
        let gateway_results = Family::<CodeLabels, Counter>::default();
        let tls_handshake_failures = Counter::default();
        registry.register(
            "wardgate_ota_tls_handshake_failures",
            "TLS handshakes refused or timed out",
            tls_handshake_failures.clone(),
        );
        registry.register(
            "wardgate_ota_http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "wardgate_ota_releases_published",
            "Manufacturer releases published",
            releases_published.clone(),
        );
        registry.register(
            "wardgate_ota_refusals",
            "Requests refused, by stable error code",
            refusals.clone(),
        );
        registry.register(
            "wardgate_ota_target_sent_bytes",
            "Firmware image bytes sent to clients",
            target_bytes_sent.clone(),
        );
        registry.register(
            "wardgate_ota_timestamp_refreshes",
            "Times timestamp.json was re-signed",
            timestamp_refreshes.clone(),
        );
        registry.register(
            "wardgate_ota_timestamp_refresh_failures",
            "Failed timestamp re-signings (needs an operator)",
            timestamp_refresh_failures.clone(),
        );
        registry.register(
            "wardgate_ota_timestamp_expiry_seconds",
            "Unix time at which the served timestamp.json expires",
            timestamp_expiry_seconds.clone(),
        );
        registry.register(
            "wardgate_ota_gateway_results",
            "Per-device results posted by gateways, by outcome",
            gateway_results.clone(),
        );
        Self {
            registry,
            http_requests,
            releases_published,
            refusals,
            target_bytes_sent,
            timestamp_refreshes,
            timestamp_refresh_failures,
            timestamp_expiry_seconds,
            gateway_results,
            tls_handshake_failures,
        }
    }

    /// Counts a refusal with its stable code.
    pub fn refused(&self, code: &str) {
        self.refusals
            .get_or_create(&CodeLabels { code: code.into() })
            .inc();
    }

    /// Renders the text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
