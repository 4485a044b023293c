//! Behavioural anomaly detection: per-device online baselines and rules
//! over everything the edge sees, alerts, and the configured response.
//!
//! The edge refuses bad packets one at a time; this module watches
//! behaviour over time, so staff can step in while an incident is small: a
//! device that floods within its rate limit, churns its connection, holds
//! sessions open without sending, is used from two places at once, or sends
//! values no body produces. Alerts are security and data-integrity events,
//! never clinical alarms: the gateway does not decide about patients.
//!
//! | part | module |
//! | --- | --- |
//! | what the detector is told, with its time ([`Observation`]) | [`signal`] |
//! | the edge's events turned into observations ([`DetectorObserver`]) | [`observer`] |
//! | EWMA baseline with a deviation band | [`baseline`] |
//! | implausible changes and flat signals in vitals | [`physiology`] |
//! | the rules and baselines per device, in given time ([`Detector`]) | [`detector`] |
//! | alerts: kind, score, evidence ([`Alert`]) | [`alert`] |
//! | the `anomaly_alerts` table with audit rows ([`AlertStore`]) | [`store`] |
//! | alert only or quarantine, per kind (`anomaly.response`) | [`response`] |
//! | the running detector: bounded queue, task, tick ([`Feed`]) | [`service`] |
//! | the edge's controls on a recorded timeline, in simulated time | [`sim_edge`] |
//! | alerts to the hospital broker on `<prefix>/alerts` | [`upstream`] |
//! | `GET /api/v1/alerts`, acknowledge, release (HTTP layer) | `crate::admin::alerts_api` |
//! | `wardgate_anomaly_*` metrics | [`metrics`] |
//!
//! Settings are the `[anomaly]` section ([`crate::config::AnomalyConfig`]).
//! The detector takes time as an input, so the evaluation
//! (`gateway/benches/anomaly_eval.rs`) runs a simulated ward hour in seconds.

pub mod alert;
pub mod baseline;
pub mod detector;
pub mod metrics;
pub mod observer;
pub mod physiology;
pub mod response;
pub mod service;
pub mod signal;
pub mod sim_edge;
pub mod store;
pub mod upstream;

use std::sync::Arc;

use tokio::sync::Notify;

pub use alert::{Alert, AlertKind, Finding};
pub use detector::Detector;
pub use metrics::AnomalyMetrics;
pub use observer::DetectorObserver;
pub use service::Feed;
pub use signal::{Observation, Signal};
pub use store::{AlertStore, StoreError};

use crate::context::GatewayContext;
use crate::edge::EdgeObserver;

/// Why the detector could not start.
#[derive(Debug, thiserror::Error)]
pub enum AnomalyError {
    /// The alert store could not be opened.
    #[error("anomaly alert store failed to open")]
    Store(#[source] StoreError),
    /// The alert publisher's TLS files are unusable (they are the uplink's).
    #[error("anomaly alert publisher cannot use the uplink's TLS settings")]
    Upstream(#[source] crate::uplink::UplinkError),
}

/// The running detector of a gateway.
#[derive(Debug, Clone)]
pub struct Anomaly {
    /// Stored alerts.
    pub store: AlertStore,
    /// The detector's entrance.
    pub feed: Feed,
    /// Its metric families.
    pub metrics: AnomalyMetrics,
}

impl Anomaly {
    /// Start the detector of the gateway `ctx` (and its upstream publisher
    /// when the uplink is enabled and `anomaly.upstream` is set); `None`
    /// when `anomaly.enabled` is false.
    ///
    /// # Errors
    /// [`AnomalyError`] naming the part that could not start.
    pub fn start(ctx: &Arc<GatewayContext>) -> Result<Option<Self>, AnomalyError> {
        let cfg = &ctx.config.anomaly;
        if !cfg.enabled {
            tracing::warn!("anomaly detection disabled (anomaly.enabled = false)");
            return Ok(None);
        }
        let store = AlertStore::open(&ctx.db_path).map_err(AnomalyError::Store)?;
        let metrics = AnomalyMetrics::register(&ctx.metrics);
        let new_alert = Arc::new(Notify::new());
        if cfg.upstream && ctx.config.uplink.enabled {
            let settings = crate::uplink::BridgeSettings::from_config(&ctx.config.uplink)
                .map_err(AnomalyError::Upstream)?;
            upstream::spawn(
                &settings,
                store.clone(),
                new_alert.clone(),
                metrics.clone(),
                &ctx.tasks,
                ctx.shutdown.child_token(),
            );
        }
        let sinks = service::Sinks {
            store: store.clone(),
            registry: ctx.registry.clone(),
            metrics: metrics.clone(),
            new_alert,
            config: cfg.clone(),
        };
        let feed = service::spawn(sinks, &ctx.tasks, ctx.shutdown.child_token(), None);
        Ok(Some(Self {
            store,
            feed,
            metrics,
        }))
    }

    /// The edge observer feeding this detector.
    #[must_use]
    pub fn observer(&self) -> Arc<dyn EdgeObserver> {
        Arc::new(DetectorObserver::new(self.feed.clone()))
    }
}
