//! The running detector of a gateway: a bounded queue the edge feeds
//! without waiting, one task that owns the [`Detector`], and what happens to
//! each finding (store + audit, metric, response, upstream).
//!
//! [`Feed::submit`] never blocks: when the queue (`anomaly.queue`) is full
//! the observation is dropped and counted, and the next tick raises one
//! `events_dropped` alert so an operator knows the detector was blind for
//! a moment. The task ticks once a second for time-based findings (silent
//! sessions) and stops on the gateway's shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::alert::{Alert, AlertKind, Finding};
use super::detector::Detector;
use super::metrics::AnomalyMetrics;
use super::response::{self, Applied};
use super::signal::Observation;
use super::store::AlertStore;
use crate::config::AnomalyConfig;
use crate::registry::Registry;

/// How often time-based findings are judged.
pub const TICK: Duration = Duration::from_secs(1);

/// The non-blocking entrance of the detector; cheap to clone.
#[derive(Debug, Clone)]
pub struct Feed {
    tx: mpsc::Sender<Observation>,
    dropped: Arc<AtomicU64>,
    metrics: AnomalyMetrics,
}

impl Feed {
    /// Queue `obs` for the detector; `false` (and counted) when the queue
    /// is full or the detector stopped. Never waits.
    pub fn submit(&self, obs: Observation) -> bool {
        if self.tx.try_send(obs).is_ok() {
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.metrics.dropped.inc();
            false
        }
    }
}

/// What a finding turned into, for the task's caller and tests.
#[derive(Debug, Clone)]
pub struct Raised {
    /// The stored alert.
    pub alert: Alert,
    /// What the response did.
    pub applied: Applied,
}

/// Everything the detector task needs besides its queue.
#[derive(Debug, Clone)]
pub struct Sinks {
    /// Where alerts are stored (and audited).
    pub store: AlertStore,
    /// The registry, for quarantine.
    pub registry: Registry,
    /// Metric families.
    pub metrics: AnomalyMetrics,
    /// Woken when a new alert is stored (the upstream publisher waits on it).
    pub new_alert: Arc<Notify>,
    /// Responses per kind.
    pub config: AnomalyConfig,
}

impl Sinks {
    /// Store `finding`, count it, apply its response and wake the publisher.
    /// A storage failure is logged (the finding is lost, nothing else).
    pub async fn raise(&self, finding: Finding) -> Option<Raised> {
        let response = self.config.response_to(finding.kind.as_str());
        let kind = finding.kind;
        let subject = finding.subject.clone();
        let mut alert = match self.store.insert_async(finding, response).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, %kind, %subject, "cannot store anomaly alert");
                return None;
            }
        };
        self.metrics.alert(kind.as_str());
        tracing::warn!(alert_id = alert.id, %kind, %subject, score = alert.score, "anomaly alert");
        let applied = match response::apply(&self.registry, &alert).await {
            Ok(applied) => applied,
            Err(e) => {
                tracing::error!(alert_id = alert.id, error = %e, "cannot quarantine the device of an alert; quarantine it by hand with POST /api/v1/devices/{{id}}/quarantine");
                Applied::AlertOnly
            }
        };
        if applied == Applied::Quarantined {
            self.metrics.quarantines.inc();
            alert.quarantined = true;
            let store = self.store.clone();
            let id = alert.id;
            let marked = tokio::task::spawn_blocking(move || store.mark_quarantined(id)).await;
            if !matches!(marked, Ok(Ok(()))) {
                tracing::error!(alert_id = id, "cannot record the quarantine on the alert");
            }
            tracing::warn!(alert_id = alert.id, %subject, "device quarantined by anomaly response");
        }
        self.new_alert.notify_one();
        Some(Raised { alert, applied })
    }
}

/// Start the detector task on `tasks`; returns its [`Feed`]. `raised`, if
/// given, receives every alert as it is raised (bounded; not waited on).
pub fn spawn(
    sinks: Sinks,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
    raised: Option<mpsc::Sender<Raised>>,
) -> Feed {
    let (tx, rx) = mpsc::channel(sinks.config.queue);
    let dropped = Arc::new(AtomicU64::new(0));
    let feed = Feed {
        tx,
        dropped: dropped.clone(),
        metrics: sinks.metrics.clone(),
    };
    let detector = Detector::new(sinks.config.clone());
    tasks.spawn(run(detector, rx, dropped, sinks, shutdown, raised));
    feed
}

async fn run(
    mut detector: Detector,
    mut rx: mpsc::Receiver<Observation>,
    dropped: Arc<AtomicU64>,
    sinks: Sinks,
    shutdown: CancellationToken,
    raised: Option<mpsc::Sender<Raised>>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported_drops = 0;
    loop {
        let findings = tokio::select! {
            () = shutdown.cancelled() => break,
            obs = rx.recv() => match obs {
                Some(obs) => {
                    sinks.metrics.events.inc();
                    detector.observe(&obs)
                }
                None => break,
            },
            _ = tick.tick() => {
                let now = Utc::now();
                let mut f = detector.tick(now);
                let drops = dropped.load(Ordering::Relaxed);
                if drops > reported_drops {
                    f.push(dropped_finding(now, drops - reported_drops));
                    reported_drops = drops;
                }
                f
            }
        };
        for finding in findings {
            if let Some(r) = sinks.raise(finding).await {
                if let Some(tx) = &raised {
                    let _ = tx.try_send(r);
                }
            }
        }
    }
    tracing::info!("anomaly detector stopped");
}

fn dropped_finding(at: DateTime<Utc>, count: u64) -> Finding {
    #[allow(clippy::cast_precision_loss)]
    let score = count as f64;
    Finding {
        at,
        device: None,
        subject: "gateway".into(),
        kind: AlertKind::EventsDropped,
        score,
        evidence: serde_json::json!({
            "dropped_events": count,
            "hint": "the detector queue (anomaly.queue) was full; raise it or find what floods the edge",
        }),
    }
}
