//! The admin API's metric families, registered in the gateway's shared
//! Prometheus registry: `wardgate_admin_refusals_total{reason}` (every
//! refused call, by [`crate::access::Refusal::reason`]) and
//! `wardgate_admin_requests_total{action}` (authorised calls).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{Labels, Metrics};

/// The admin component's metric families.
#[derive(Debug, Clone, Default)]
pub struct AdminMetrics {
    /// `wardgate_admin_refusals_total{reason}`.
    pub refusals: Family<Labels, Counter>,
    /// `wardgate_admin_requests_total{action}`: authorised calls.
    pub requests: Family<Labels, Counter>,
}

impl AdminMetrics {
    /// New families, registered in the shared registry.
    #[must_use]
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
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
        self.refusals
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }

    /// Count an authorised call.
    pub fn request(&self, action: &str) {
        self.requests
            .get_or_create(&vec![("action".to_owned(), action.to_owned())])
            .inc();
    }

    /// Current value of `wardgate_admin_refusals_total{reason}`.
    #[must_use]
    pub fn refusal_count(&self, reason: &str) -> u64 {
        self.refusals
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .get()
    }
}
