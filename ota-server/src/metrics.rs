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

/// All server metrics: plain handles, updated where things happen.
/// [`Metrics::render`] registers them into a fresh registry per scrape, so
/// the list of families lives in one place only.
#[derive(Debug, Default)]
pub struct Metrics {
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

impl Metrics {
    /// Fresh, zeroed metrics.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
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
        let mut registry = Registry::default();
        registry.register(
            "wardgate_ota_tls_handshake_failures",
            "TLS handshakes refused or timed out",
            self.tls_handshake_failures.clone(),
        );
        registry.register(
            "wardgate_ota_http_requests",
            "HTTP requests by route and status",
            self.http_requests.clone(),
        );
        registry.register(
            "wardgate_ota_releases_published",
            "Manufacturer releases published",
            self.releases_published.clone(),
        );
        registry.register(
            "wardgate_ota_refusals",
            "Requests refused, by stable error code",
            self.refusals.clone(),
        );
        registry.register(
            "wardgate_ota_target_sent_bytes",
            "Firmware image bytes sent to clients",
            self.target_bytes_sent.clone(),
        );
        registry.register(
            "wardgate_ota_timestamp_refreshes",
            "Times timestamp.json was re-signed",
            self.timestamp_refreshes.clone(),
        );
        registry.register(
            "wardgate_ota_timestamp_refresh_failures",
            "Failed timestamp re-signings (needs an operator)",
            self.timestamp_refresh_failures.clone(),
        );
        registry.register(
            "wardgate_ota_timestamp_expiry_seconds",
            "Unix time at which the served timestamp.json expires",
            self.timestamp_expiry_seconds.clone(),
        );
        registry.register(
            "wardgate_ota_gateway_results",
            "Per-device results posted by gateways, by outcome",
            self.gateway_results.clone(),
        );
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}
