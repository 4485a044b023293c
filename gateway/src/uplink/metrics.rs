//! The uplink's Prometheus families, registered into the gateway's shared
//! registry (`wardgate_uplink_*`).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters and gauges of the outbox and the bridge. Cheap to clone (each
/// family is an `Arc` inside).
#[derive(Debug, Clone, Default)]
pub struct UplinkMetrics {
    /// 1 while the upstream broker session is up, else 0.
    pub connected: Gauge,
    /// Messages waiting in the outbox.
    pub outbox_rows: Gauge,
    /// Sealed payload bytes waiting in the outbox.
    pub outbox_bytes: Gauge,
    /// Age of the oldest waiting message, seconds (0 when empty).
    pub oldest_age_seconds: Gauge<f64, AtomicU64>,
    /// Telemetry messages committed to the outbox.
    pub accepted: Counter,
    /// Telemetry messages refused because the outbox was full.
    pub refused: Counter,
    /// Non-critical messages dropped by the `drop_oldest` policy.
    pub dropped: Counter,
    /// Times the outbox went from having room to full.
    pub full_events: Counter,
    /// Upstream publishes acknowledged by the broker.
    pub published: Counter,
    /// Outbox rows deleted after every rendering was acknowledged.
    pub delivered: Counter,
    /// Connection attempts after a failure or disconnect.
    pub reconnects: Counter,
    /// Group-commit transactions on the outbox.
    pub commits: Counter,
    /// Rows that could not be opened with the current key.
    pub unreadable: Counter,
}

impl UplinkMetrics {
    /// Fresh families, registered into `registry`.
    #[must_use]
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "wardgate_uplink_connected",
            "1 while the upstream broker session is up, else 0",
            m.connected.clone(),
        );
        registry.register(
            "wardgate_uplink_outbox_rows",
            "Telemetry messages waiting in the durable outbox",
            m.outbox_rows.clone(),
        );
        registry.register(
            "wardgate_uplink_outbox_bytes",
            "Sealed payload bytes waiting in the durable outbox",
            m.outbox_bytes.clone(),
        );
        registry.register(
            "wardgate_uplink_outbox_oldest_age_seconds",
            "Age of the oldest message waiting in the outbox (0 when empty)",
            m.oldest_age_seconds.clone(),
        );
        registry.register(
            "wardgate_uplink_accepted_messages",
            "Telemetry messages committed to the outbox",
            m.accepted.clone(),
        );
        registry.register(
            "wardgate_uplink_refused_messages",
            "Telemetry messages refused because the outbox was full",
            m.refused.clone(),
        );
        registry.register(
            "wardgate_uplink_dropped_messages",
            "Non-critical messages dropped from a full outbox (policy drop_oldest)",
            m.dropped.clone(),
        );
        registry.register(
            "wardgate_uplink_outbox_full_events",
            "Times the outbox reached its configured bound",
            m.full_events.clone(),
        );
        registry.register(
            "wardgate_uplink_published_messages",
            "Upstream publishes acknowledged by the hospital broker",
            m.published.clone(),
        );
        registry.register(
            "wardgate_uplink_delivered_messages",
            "Outbox messages removed after the upstream broker acknowledged every rendering",
            m.delivered.clone(),
        );
        registry.register(
            "wardgate_uplink_reconnects",
            "Upstream connection attempts after a failure",
            m.reconnects.clone(),
        );
        registry.register(
            "wardgate_uplink_outbox_commits",
            "Group-commit transactions on the outbox",
            m.commits.clone(),
        );
        registry.register(
            "wardgate_uplink_outbox_unreadable_rows",
            "Outbox rows that could not be opened with the current key",
            m.unreadable.clone(),
        );
        m
    }
}
