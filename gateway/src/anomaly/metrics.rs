//! The `wardgate_anomaly_*` metric families: what the detector saw, what
//! it raised, what it could not look at.

use prometheus_client::metrics::counter::Counter;

use crate::metrics::{CounterBy, Metrics};

/// Handles on the detector's families; cheap to clone.
#[derive(Debug, Clone)]
pub struct AnomalyMetrics {
    /// `wardgate_anomaly_events_total`: edge events examined.
    pub events: Counter,
    /// `wardgate_anomaly_events_dropped_total`: edge events not examined
    /// because the detector's queue (`anomaly.queue`) was full.
    pub dropped: Counter,
    /// `wardgate_anomaly_alerts_total{kind}`: alerts raised.
    pub alerts: CounterBy,
    /// `wardgate_anomaly_quarantines_total`: devices quarantined by a response.
    pub quarantines: Counter,
    /// `wardgate_anomaly_alerts_published_total`: alerts the upstream
    /// broker acknowledged on the alert topic.
    pub published: Counter,
}

impl AnomalyMetrics {
    /// Register the families in `metrics`.
    #[must_use]
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self {
            events: Counter::default(),
            dropped: Counter::default(),
            alerts: CounterBy::new("kind"),
            quarantines: Counter::default(),
            published: Counter::default(),
        };
        metrics.register(
            "wardgate_anomaly_events",
            "Edge events examined by the anomaly detector",
            m.events.clone(),
        );
        metrics.register(
            "wardgate_anomaly_events_dropped",
            "Edge events dropped because the detector queue (anomaly.queue) was full",
            m.dropped.clone(),
        );
        metrics.register(
            "wardgate_anomaly_alerts",
            "Anomaly alerts raised, by kind",
            m.alerts.clone(),
        );
        metrics.register(
            "wardgate_anomaly_quarantines",
            "Devices quarantined in response to an alert",
            m.quarantines.clone(),
        );
        metrics.register(
            "wardgate_anomaly_alerts_published",
            "Alerts acknowledged by the upstream broker on the alert topic",
            m.published.clone(),
        );
        m
    }

    /// Count an alert of `kind`.
    pub fn alert(&self, kind: &str) {
        self.alerts.inc(kind);
    }

    /// Alerts of `kind` counted so far.
    #[must_use]
    pub fn alert_count(&self, kind: &str) -> u64 {
        self.alerts.get(kind)
    }
}
