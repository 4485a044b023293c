//! [`AdminState`]: what the guard and the handlers share: the `[admin]`
//! section, the token store, the registry, the audit log, the metrics and
//! the uplink's status view and the OTA rollout.

use std::sync::Arc;
use std::time::Instant;

use super::metrics::AdminMetrics;
use crate::access::token::store::TokenStore;
use crate::anomaly::AlertStore;
use crate::audit::AuditLog;
use crate::config::AdminConfig;
use crate::console::RecentActivity;
use crate::metrics::Metrics;
use crate::ota::agent::RolloutHandle;
use crate::registry::Registry;
use crate::uplink::UplinkMonitor;

/// Everything the handlers use.
#[derive(Debug)]
pub struct AdminState {
    /// The `[admin]` section.
    pub config: AdminConfig,
    /// Access tokens.
    pub tokens: Arc<TokenStore>,
    /// The device registry.
    pub registry: Registry,
    /// The audit log.
    pub audit: AuditLog,
    /// The shared metrics registry (for `/metrics`).
    pub shared_metrics: Metrics,
    /// The admin families.
    pub metrics: AdminMetrics,
    /// When the server started (for `status`).
    pub started: Instant,
    /// The uplink's connection and outbox status, when an uplink runs.
    pub uplink: Option<UplinkMonitor>,
    /// The OTA rollout (progress, operator retry), when `[ota]` runs.
    pub ota: Option<RolloutHandle>,
    /// Recent readings and live sessions per device (the console's charts).
    pub recent: RecentActivity,
    /// Anomaly alerts, when the detector runs.
    pub alerts: Option<AlertStore>,
}

impl AdminState {
    /// Assemble the state and register the admin metric families.
    #[must_use]
    pub fn new(
        config: AdminConfig,
        tokens: Arc<TokenStore>,
        registry: Registry,
        audit: AuditLog,
        shared_metrics: Metrics,
    ) -> Self {
        let metrics = AdminMetrics::register(&shared_metrics);
        Self {
            config,
            tokens,
            registry,
            audit,
            shared_metrics,
            metrics,
            started: Instant::now(),
            uplink: None,
            ota: None,
            recent: RecentActivity::new(),
            alerts: None,
        }
    }

    /// Serve the detector's alerts (`/api/v1/alerts`).
    #[must_use]
    pub fn with_alerts(mut self, alerts: AlertStore) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// Show this uplink's status in `GET /api/v1/status`.
    #[must_use]
    pub fn with_uplink(mut self, uplink: UplinkMonitor) -> Self {
        self.uplink = Some(uplink);
        self
    }

    /// Serve this rollout's progress and operator retry
    /// (`/api/v1/ota/...`).
    #[must_use]
    pub fn with_ota(mut self, rollout: RolloutHandle) -> Self {
        self.ota = Some(rollout);
        self
    }

    /// Serve this gateway's recent readings in `GET /api/v1/readings`.
    #[must_use]
    pub fn with_recent(mut self, recent: RecentActivity) -> Self {
        self.recent = recent;
        self
    }
}
