//! The admin API's metric families, registered in the gateway's shared
//! Prometheus registry: `wardgate_admin_refusals_total{reason}` (every
//! refused call, by [`crate::access::Refusal::reason`]) and
//! `wardgate_admin_requests_total{action}` (authorised calls).

use crate::metrics::{CounterBy, Metrics};

/// The admin component's metric families.
#[derive(Debug, Clone)]
pub struct AdminMetrics {
    /// `wardgate_admin_refusals_total{reason}`.
    pub refusals: CounterBy,
    /// `wardgate_admin_requests_total{action}`: authorised calls.
    pub requests: CounterBy,
}

impl AdminMetrics {
    /// New families, registered in the shared registry.
    #[must_use]
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            refusals: CounterBy::new("reason"),
            requests: CounterBy::new("action"),
        };
        metrics.register(
            "wardgate_admin_refusals",
            "Admin API calls refused, by reason",
            this.refusals.clone(),
        );
        metrics.register(
            "wardgate_admin_requests",
            "Authorised admin API calls, by action",
            this.requests.clone(),
        );
        this
    }

    /// Count a refusal.
    pub fn refusal(&self, reason: &str) {
        self.refusals.inc(reason);
    }

    /// Count an authorised call.
    pub fn request(&self, action: &str) {
        self.requests.inc(action);
    }

    /// Current value of `wardgate_admin_refusals_total{reason}`.
    #[must_use]
    pub fn refusal_count(&self, reason: &str) -> u64 {
        self.refusals.get(reason)
    }
}
