//! `[anomaly]`: the behavioural anomaly detector's settings, as a plain
//! serde struct with safe defaults, and their refusals.
//!
//! A leaf like [`super::sections`]: it imports no other gateway module, so
//! the detector (`crate::anomaly`) reads its section from here without an
//! import loop. The thresholds are the detector's knobs; the defaults were
//! chosen on the simulated ward (`device-sim` scenarios) to catch every
//! labelled attack within seconds and raise nothing on an hour of clean
//! traffic. [`AnomalyConfig::validate`] is called from
//! [`super::validate`] with the other sections.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;

/// What the gateway does when an alert of a kind is raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseAction {
    /// Record and publish the alert only.
    Alert,
    /// Also quarantine the device through the registry (it may only
    /// publish `status` and `ota/report` and receive `cmd` and `ota/offer`;
    /// its telemetry no longer reaches the uplink)
    /// until an operator releases it.
    Quarantine,
}

/// `[anomaly]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Run the detector at all.
    pub enabled: bool,
    /// Edge events queued for the detector; when full, further events are
    /// dropped and counted (`wardgate_anomaly_events_dropped_total`), the
    /// edge never waits.
    pub queue: usize,
    /// Most devices and peers tracked at once (state is small, but bounded).
    pub max_tracked: usize,
    /// One alert per device and kind within this time; repeats within it
    /// are not raised again.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Messages a device must send before its own baselines are trusted.
    pub warmup_messages: u32,
    /// Arrivals in the window the recent message rate is measured over.
    pub rate_window: usize,
    /// A recent rate this many times the device's baseline is a flood.
    pub flood_factor: f64,
    /// ... and only if it is also above this many messages per second.
    pub flood_min_rate: f64,
    /// A rate above this is a flood even before the baseline is warm.
    pub flood_absolute_rate: f64,
    /// A payload this many deviations above the device's mean size ...
    pub size_band: f64,
    /// ... and at least this many bytes above it is anomalous.
    pub size_min_excess: usize,
    /// Sessions opened by one device within `churn_window` that count as churn.
    pub churn_connects: usize,
    /// Window of `churn_connects`.
    #[serde(with = "humantime_serde")]
    pub churn_window: Duration,
    /// Refused connections (TLS, certificate, CONNECT) from one peer or
    /// device within `auth_window` that raise an alert.
    pub auth_failures: usize,
    /// Window of `auth_failures`.
    #[serde(with = "humantime_serde")]
    pub auth_window: Duration,
    /// A second session of a device counts as a duplicate when the first
    /// one published within this time (a dead half-open session does not).
    #[serde(with = "humantime_serde")]
    pub duplicate_recent: Duration,
    /// A session that publishes nothing for this long (or three baseline
    /// intervals, whichever is longer) is silent.
    #[serde(with = "humantime_serde")]
    pub silent_after: Duration,
    /// Consecutive telemetry messages with every physiological value
    /// unchanged that make a flat-lined signal.
    pub flat_samples: u32,
    /// Response per alert kind (`alert` or `quarantine`); kinds not listed
    /// get `alert`.
    pub response: BTreeMap<String, ResponseAction>,
    /// Publish alerts upstream (uplink broker, `<uplink.topic_prefix>/alerts`)
    /// when the uplink is enabled.
    pub upstream: bool,
}

/// The alert kinds a response can be configured for.
pub const ALERT_KINDS: [&str; 11] = [
    "message_flood",
    "payload_size",
    "connection_churn",
    "policy_violation",
    "auth_failure",
    "duplicate_session",
    "silent_session",
    "implausible_change",
    "flat_signal",
    "events_dropped",
    "update_metadata_refused",
];

impl Default for AnomalyConfig {
    fn default() -> Self {
        let mut response = BTreeMap::new();
        // A certificate used from two places at once is stolen: confine it.
        response.insert("duplicate_session".to_owned(), ResponseAction::Quarantine);
        Self {
            enabled: true,
            queue: 16_384,
            max_tracked: 20_000,
            cooldown: Duration::from_secs(60),
            warmup_messages: 20,
            rate_window: 20,
            flood_factor: 5.0,
            flood_min_rate: 5.0,
            flood_absolute_rate: 20.0,
            size_band: 8.0,
            size_min_excess: 512,
            churn_connects: 5,
            churn_window: Duration::from_secs(60),
            auth_failures: 3,
            auth_window: Duration::from_secs(60),
            duplicate_recent: Duration::from_secs(5),
            silent_after: Duration::from_secs(6),
            flat_samples: 8,
            response,
            upstream: true,
        }
    }
}

impl AnomalyConfig {
    /// The configured response to alerts of `kind`.
    #[must_use]
    pub fn response_to(&self, kind: &str) -> ResponseAction {
        self.response
            .get(kind)
            .copied()
            .unwrap_or(ResponseAction::Alert)
    }

    /// Refuse invalid `[anomaly]` settings, naming the field.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first bad field (`anomaly.<field>`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: &str| {
            Err(ConfigError::invalid(format!("anomaly.{field}"), reason))
        };
        if self.queue == 0 || self.queue > 1_000_000 {
            return bad("queue", "must be between 1 and 1000000");
        }
        if self.max_tracked == 0 {
            return bad("max_tracked", "must be at least 1");
        }
        if self.rate_window < 3 || self.rate_window > 1000 {
            return bad("rate_window", "must be between 3 and 1000 arrivals");
        }
        for (field, v) in [
            ("flood_factor", self.flood_factor),
            ("flood_min_rate", self.flood_min_rate),
            ("flood_absolute_rate", self.flood_absolute_rate),
            ("size_band", self.size_band),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return bad(field, "must be a positive number");
            }
        }
        if self.flood_factor < 1.5 {
            return bad(
                "flood_factor",
                "must be at least 1.5, or normal jitter raises alerts",
            );
        }
        if self.churn_connects < 2 {
            return bad("churn_connects", "must be at least 2");
        }
        if self.auth_failures == 0 {
            return bad("auth_failures", "must be at least 1");
        }
        if self.flat_samples < 3 {
            return bad("flat_samples", "must be at least 3");
        }
        for (field, d) in [
            ("cooldown", self.cooldown),
            ("churn_window", self.churn_window),
            ("auth_window", self.auth_window),
            ("duplicate_recent", self.duplicate_recent),
            ("silent_after", self.silent_after),
        ] {
            if d.is_zero() || d > Duration::from_secs(86_400) {
                return bad(field, "must be between 1ms and 24h");
            }
        }
        for kind in self.response.keys() {
            if !ALERT_KINDS.contains(&kind.as_str()) {
                return Err(ConfigError::invalid(
                    format!("anomaly.response.{kind}"),
                    format!(
                        "is not an alert kind; use one of {}",
                        ALERT_KINDS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_quarantine_stolen_certificates() {
        let c = AnomalyConfig::default();
        c.validate().unwrap();
        assert_eq!(
            c.response_to("duplicate_session"),
            ResponseAction::Quarantine
        );
        assert_eq!(c.response_to("message_flood"), ResponseAction::Alert);
    }

    #[test]
    fn refusals_name_the_field() {
        let mut c = AnomalyConfig::default();
        c.response
            .insert("ransomware".into(), ResponseAction::Quarantine);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("anomaly.response.ransomware"), "{e}");
        let c = AnomalyConfig {
            flood_factor: 1.0,
            ..AnomalyConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("anomaly.flood_factor"), "{e}");
    }

    #[test]
    fn parses_from_toml() {
        let c: AnomalyConfig =
            toml::from_str("cooldown = \"30s\"\n[response]\nmessage_flood = \"quarantine\"\n")
                .unwrap();
        assert_eq!(c.cooldown, Duration::from_secs(30));
        assert_eq!(c.response_to("message_flood"), ResponseAction::Quarantine);
    }
}
