//! The gateway's shared Prometheus registry.
//!
//! One [`Metrics`] lives in the [`crate::context::GatewayContext`]. Each
//! component registers its own families with [`Metrics::register`] (names
//! `wardgate_<component>_<what>_<unit>`; counters get `_total` appended by
//! the encoder) and keeps the handles; the admin server's `/metrics` calls
//! [`Metrics::encode`]. The edge's own families are in [`EdgeMetrics`].

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry};

/// Label set used by the gateway's families: `(name, value)` pairs.
pub type Labels = Vec<(String, String)>;

/// A counter family with one label, which most of the gateway's families
/// are (`..._total{reason}`, `{outcome}`, `{kind}`). The label's name is
/// fixed where the family is declared, so no call site can misspell it;
/// registered like any family ([`Metrics::register`]).
#[derive(Debug, Clone)]
pub struct CounterBy {
    label: &'static str,
    family: Family<Labels, Counter>,
}

impl CounterBy {
    /// An empty family whose one label is `label`.
    #[must_use]
    pub fn new(label: &'static str) -> Self {
        Self {
            label,
            family: Family::default(),
        }
    }

    /// Count one for `value` of the label.
    pub fn inc(&self, value: &str) {
        self.family.get_or_create(&self.labels(value)).inc();
    }

    /// Counted so far for `value`.
    #[must_use]
    pub fn get(&self, value: &str) -> u64 {
        self.family.get_or_create(&self.labels(value)).get()
    }

    fn labels(&self, value: &str) -> Labels {
        vec![(self.label.to_owned(), value.to_owned())]
    }
}

impl EncodeMetric for CounterBy {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.family.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.family.metric_type()
    }
}

/// Shared registry plus the edge's families; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// The edge's families.
    pub edge: EdgeMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Families the edge updates.
#[derive(Clone, Debug)]
pub struct EdgeMetrics {
    /// `wardgate_edge_connections_total{outcome}`: accepted / refused
    /// connection attempts by reason.
    pub connections: CounterBy,
    /// `wardgate_edge_active_connections`: live device sessions.
    pub active: Gauge,
    /// `wardgate_edge_violations_total{reason}`: policy violations that
    /// disconnected a device.
    pub violations: CounterBy,
    /// `wardgate_edge_messages_total{kind}`: PUBLISHes forwarded to the broker.
    pub messages: CounterBy,
    /// `wardgate_edge_sink_seconds`: time spent in the telemetry sink.
    pub sink_seconds: Histogram,
}

impl EdgeMetrics {
    /// Count a connection outcome.
    pub fn connection(&self, outcome: &str) {
        self.connections.inc(outcome);
    }

    /// Count a violation.
    pub fn violation(&self, reason: &str) {
        self.violations.inc(reason);
    }

    /// Count a forwarded message.
    pub fn message(&self, kind: &str) {
        self.messages.inc(kind);
    }

    /// Current value of `wardgate_edge_violations_total{reason}`.
    #[must_use]
    pub fn violation_count(&self, reason: &str) -> u64 {
        self.violations.get(reason)
    }

    /// Current value of `wardgate_edge_connections_total{outcome}`.
    #[must_use]
    pub fn connection_count(&self, outcome: &str) -> u64 {
        self.connections.get(outcome)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with the edge's families registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let edge = EdgeMetrics {
            connections: CounterBy::new("outcome"),
            active: Gauge::default(),
            violations: CounterBy::new("reason"),
            messages: CounterBy::new("kind"),
            sink_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
        };
        registry.register(
            "wardgate_edge_connections",
            "Device connection attempts by outcome",
            edge.connections.clone(),
        );
        registry.register(
            "wardgate_edge_active_connections",
            "Live device sessions",
            edge.active.clone(),
        );
        registry.register(
            "wardgate_edge_violations",
            "Policy violations that disconnected a device, by reason",
            edge.violations.clone(),
        );
        registry.register(
            "wardgate_edge_messages",
            "PUBLISH packets forwarded to the broker, by topic kind",
            edge.messages.clone(),
        );
        registry.register(
            "wardgate_edge_sink_seconds",
            "Time the telemetry sink took to commit a message",
            edge.sink_seconds.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            edge,
        }
    }

    /// Register a metric family; keep the handle you passed in to update it.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        // A poisoned lock only means another registration panicked; the
        // registry itself is still consistent.
        let mut registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        registry.register(name, help, metric);
    }

    /// Run `f` with the registry (for sub-registries, collectors, units).
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut registry)
    }

    /// The Prometheus text exposition of everything registered.
    #[must_use]
    pub fn encode(&self) -> String {
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_edge_and_foreign_families() {
        let m = Metrics::new();
        m.edge.violation("acl");
        m.edge.connection("accepted");
        let c: Counter = Counter::default();
        m.register("wardgate_test_things", "test", c.clone());
        c.inc();
        let text = m.encode();
        assert!(
            text.contains("wardgate_edge_violations_total{reason=\"acl\"} 1"),
            "{text}"
        );
        assert!(text.contains("wardgate_test_things_total 1"));
        assert_eq!(m.edge.violation_count("acl"), 1);
    }
}
