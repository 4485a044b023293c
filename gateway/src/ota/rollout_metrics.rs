//! The rollout's Prometheus families (`wardgate_ota_*`): offers, device
//! update states entered, results reported to the OTA server, rollout steps
//! refused, and the image server's requests and bytes served.
//!
//! Registered once per gateway in the shared [`Metrics`] registry; the
//! handles are cheap to clone.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{Labels, Metrics};

/// The rollout's families.
#[derive(Clone, Debug)]
pub struct RolloutMetrics {
    /// `wardgate_ota_offers_total{kind}`: offers sent (`first`, `again`).
    pub offers: Family<Labels, Counter>,
    /// `wardgate_ota_device_states_total{state}`: device updates entering a state.
    pub states: Family<Labels, Counter>,
    /// `wardgate_ota_results_total{outcome}`: outcomes the OTA server accepted.
    pub results: Family<Labels, Counter>,
    /// `wardgate_ota_server_requests_total{endpoint,outcome}`: calls to the
    /// OTA server's gateway API.
    pub server_requests: Family<Labels, Counter>,
    /// `wardgate_ota_steps_refused_total{reason}`: rollout steps the gateway
    /// would not start (expired metadata, unverifiable target, ...).
    pub steps_refused: Family<Labels, Counter>,
    /// `wardgate_ota_device_messages_invalid_total`: status or report
    /// messages that did not parse.
    pub invalid_messages: Counter,
    /// `wardgate_ota_image_requests_total{outcome}`: image server responses
    /// and refused connections.
    pub image_requests: Family<Labels, Counter>,
    /// `wardgate_ota_image_bytes_served_total`: image bytes sent to devices.
    pub image_bytes_served: Counter,
    /// `wardgate_ota_image_downloads_active`: downloads in progress.
    pub image_downloads_active: Gauge,
}

fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_owned(), value.to_owned())]
}

impl RolloutMetrics {
    /// Create and register the families in `metrics`.
    #[must_use]
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self {
            offers: Family::default(),
            states: Family::default(),
            results: Family::default(),
            server_requests: Family::default(),
            steps_refused: Family::default(),
            invalid_messages: Counter::default(),
            image_requests: Family::default(),
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
        self.offers.get_or_create(&label("kind", kind)).inc();
    }

    /// Count a device update entering `state`.
    pub fn state(&self, state: &str) {
        self.states.get_or_create(&label("state", state)).inc();
    }

    /// Count an outcome the server accepted.
    pub fn result(&self, outcome: &str) {
        self.results.get_or_create(&label("outcome", outcome)).inc();
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

    /// Count a refused rollout step.
    pub fn step_refused(&self, reason: &str) {
        self.steps_refused
            .get_or_create(&label("reason", reason))
            .inc();
    }

    /// Count an image server outcome.
    pub fn image_request(&self, outcome: &str) {
        self.image_requests
            .get_or_create(&label("outcome", outcome))
            .inc();
    }

    /// Current count of an image server outcome.
    #[must_use]
    pub fn image_request_count(&self, outcome: &str) -> u64 {
        self.image_requests
            .get_or_create(&label("outcome", outcome))
            .get()
    }

    /// Current count of offers of `kind`.
    #[must_use]
    pub fn offer_count(&self, kind: &str) -> u64 {
        self.offers.get_or_create(&label("kind", kind)).get()
    }
}
