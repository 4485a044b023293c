//! The rollout's Prometheus families (`wardgate_ota_*`): offers, device
//! update states entered, results reported to the OTA server, rollout steps
//! refused, and the image server's requests and bytes served.
//!
//! Registered once per gateway in the shared [`Metrics`] registry; the
//! handles are cheap to clone.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{CounterBy, Labels, Metrics};

/// The rollout's families.
#[derive(Clone, Debug)]
pub struct RolloutMetrics {
    /// `wardgate_ota_offers_total{kind}`: offers sent (`first`, `again`).
    pub offers: CounterBy,
    /// `wardgate_ota_device_states_total{state}`: device updates entering a state.
    pub states: CounterBy,
    /// `wardgate_ota_results_total{outcome}`: outcomes the OTA server accepted.
    pub results: CounterBy,
    /// `wardgate_ota_server_requests_total{endpoint,outcome}`: calls to the
    /// OTA server's gateway API.
    pub server_requests: Family<Labels, Counter>,
    /// `wardgate_ota_steps_refused_total{reason}`: rollout steps the gateway
    /// would not start (expired metadata, unverifiable target, ...).
    pub steps_refused: CounterBy,
    /// `wardgate_ota_device_messages_invalid_total`: status or report
    /// messages that did not parse.
    pub invalid_messages: Counter,
    /// `wardgate_ota_image_requests_total{outcome}`: image server responses
    /// and refused connections.
    pub image_requests: CounterBy,
    /// `wardgate_ota_image_bytes_served_total`: image bytes sent to devices.
    pub image_bytes_served: Counter,
    /// `wardgate_ota_image_downloads_active`: downloads in progress.
    pub image_downloads_active: Gauge,
}

impl RolloutMetrics {
    /// Create and register the families in `metrics`.
    #[must_use]
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self {
            offers: CounterBy::new("kind"),
            states: CounterBy::new("state"),
            results: CounterBy::new("outcome"),
            server_requests: Family::default(),
            steps_refused: CounterBy::new("reason"),
            invalid_messages: Counter::default(),
            image_requests: CounterBy::new("outcome"),
            image_bytes_served: Counter::default(),
            image_downloads_active: Gauge::default(),
        };
        metrics.register(
            "wardgate_ota_offers",
            "Firmware offers sent to devices, first or again",
            m.offers.clone(),
        );
        metrics.register(
            "wardgate_ota_device_states",
            "Device updates entering each state",
            m.states.clone(),
        );
        metrics.register(
            "wardgate_ota_results",
            "Device outcomes accepted by the OTA server",
            m.results.clone(),
        );
        metrics.register(
            "wardgate_ota_server_requests",
            "Calls to the OTA server's gateway API by endpoint and outcome",
            m.server_requests.clone(),
        );
        metrics.register(
            "wardgate_ota_steps_refused",
            "Rollout steps not started, by reason",
            m.steps_refused.clone(),
        );
        metrics.register(
            "wardgate_ota_device_messages_invalid",
            "Device status or update reports that did not parse",
            m.invalid_messages.clone(),
        );
        metrics.register(
            "wardgate_ota_image_requests",
            "Image server responses and refused connections, by outcome",
            m.image_requests.clone(),
        );
        metrics.register(
            "wardgate_ota_image_bytes_served",
            "Firmware image bytes the gateway sent to devices",
            m.image_bytes_served.clone(),
        );
        metrics.register(
            "wardgate_ota_image_downloads_active",
            "Image downloads in progress",
            m.image_downloads_active.clone(),
        );
        m
    }

    /// Count an offer.
    pub fn offer(&self, again: bool) {
        let kind = if again { "again" } else { "first" };
        self.offers.inc(kind);
    }

    /// Count a call to the OTA server.
    pub fn server_request(&self, endpoint: &str, outcome: &str) {
        self.server_requests
            .get_or_create(&vec![
                ("endpoint".to_owned(), endpoint.to_owned()),
                ("outcome".to_owned(), outcome.to_owned()),
            ])
            .inc();
    }
}
