//! Alerts: what the detector found, about whom, how sure, and why.
//!
//! A [`Finding`] is the detector's output (pure, no id yet); the
//! [`super::store`] turns it into a stored [`Alert`] with an id, writes its
//! audit row, and the [`super::response`] applies the configured action.
//! Alerts are security and data-integrity events about devices and
//! connections, never clinical alarms about patients.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wardgate_protocol::DeviceId;

use crate::config::ResponseAction;

/// What kind of misbehaviour an alert is about.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Message rate far above the device's own baseline.
    MessageFlood,
    /// Payloads far larger than the device's own baseline.
    PayloadSize,
    /// Sessions opened again and again.
    ConnectionChurn,
    /// The edge refused a packet (topic, payload, replay, rate, protocol).
    PolicyViolation,
    /// Repeated refused connections (TLS, certificate, CONNECT).
    AuthFailure,
    /// One device identity connected from two places at once.
    DuplicateSession,
    /// A session that stays open and publishes nothing.
    SilentSession,
    /// A vital sign changed faster than a body can.
    ImplausibleChange,
    /// Every physiological value frozen for many messages.
    FlatSignal,
    /// The detector's queue overflowed: events were not examined.
    EventsDropped,
    /// The OTA server's signed update metadata was refused by the gateway's
    /// TUF client for a security reason (expired: a freeze; rolled back;
    /// bad signature; tampered; outside a delegation; clock; pinned root):
    /// no rollout step starts until a refresh verifies again.
    UpdateMetadataRefused,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 11] = [
        AlertKind::MessageFlood,
        AlertKind::PayloadSize,
        AlertKind::ConnectionChurn,
        AlertKind::PolicyViolation,
        AlertKind::AuthFailure,
        AlertKind::DuplicateSession,
        AlertKind::SilentSession,
        AlertKind::ImplausibleChange,
        AlertKind::FlatSignal,
        AlertKind::EventsDropped,
        AlertKind::UpdateMetadataRefused,
    ];

    /// The stored and configured name (`anomaly.response.<name>`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::MessageFlood => "message_flood",
            AlertKind::PayloadSize => "payload_size",
            AlertKind::ConnectionChurn => "connection_churn",
            AlertKind::PolicyViolation => "policy_violation",
            AlertKind::AuthFailure => "auth_failure",
            AlertKind::DuplicateSession => "duplicate_session",
            AlertKind::SilentSession => "silent_session",
            AlertKind::ImplausibleChange => "implausible_change",
            AlertKind::FlatSignal => "flat_signal",
            AlertKind::EventsDropped => "events_dropped",
            AlertKind::UpdateMetadataRefused => "update_metadata_refused",
        }
    }

    /// Parse a stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the detector found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// When (the time of the observation that completed the evidence).
    pub at: DateTime<Utc>,
    /// The device, when the misbehaving party is an authenticated device.
    pub device: Option<DeviceId>,
    /// Who: `device:<id>` or `peer:<ip>` for connections without identity.
    pub subject: String,
    /// What.
    pub kind: AlertKind,
    /// How far beyond normal, >= 1 (a ratio or a count over its threshold).
    pub score: f64,
    /// Why, as structured data (never payload bytes or vital values of a
    /// patient beyond the two values of an implausible change).
    pub evidence: serde_json::Value,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    /// Id, increasing.
    pub id: i64,
    /// When it was raised.
    pub at: DateTime<Utc>,
    /// The device, if any.
    #[schema(value_type = Option<String>)]
    pub device: Option<DeviceId>,
    /// `device:<id>` or `peer:<ip>`.
    pub subject: String,
    /// Kind.
    pub kind: AlertKind,
    /// Score.
    pub score: f64,
    /// Evidence.
    pub evidence: serde_json::Value,
    /// The response configured for the kind when it was raised.
    #[schema(value_type = String, pattern = "^(alert|quarantine)$")]
    pub response: ResponseAction,
    /// Whether the response quarantined the device.
    pub quarantined: bool,
    /// When an operator acknowledged it.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When an operator released the quarantined device.
    pub released_at: Option<DateTime<Utc>>,
    /// Who released it.
    pub released_by: Option<String>,
}

/// The JSON published upstream for an alert (the alert topic).
#[must_use]
pub fn upstream_payload(alert: &Alert) -> serde_json::Value {
    serde_json::json!({
        "schema": 1,
        "type": "wardgate.alert",
        "id": alert.id,
        "at": alert.at,
        "device": alert.device,
        "subject": alert.subject,
        "kind": alert.kind,
        "score": alert.score,
        "evidence": alert.evidence,
        "response": alert.response,
        "quarantined": alert.quarantined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_match_the_configurable_names() {
        for k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k.as_str()), Some(k));
            assert!(crate::config::anomaly::ALERT_KINDS.contains(&k.as_str()));
        }
        assert_eq!(
            AlertKind::ALL.len(),
            crate::config::anomaly::ALERT_KINDS.len()
        );
    }
}
