//! Labelled attacks on the simulated ward, named after the CICIoMT2024
//! classes where one fits, and how each one changes a device's plan.
//!
//! Each [`AttackKind`] knows the gateway alert kind that detects it
//! ([`AttackKind::expected_alert`]), so tests and the evaluation can check
//! the truth. [`plan`] rewrites the timeline of one device (and adds the
//! attacker's own connections) inside the attack's window; everything
//! else about the ward stays clean.

pub mod plan;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wardgate_protocol::DeviceId;

pub use plan::plan;

/// Where a labelled attack lies on the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackWindow {
    /// Which attack.
    pub kind: AttackKind,
    /// The device attacked or misused.
    pub device: DeviceId,
    /// Start offset.
    pub start: Duration,
    /// End offset.
    pub end: Duration,
}

/// The attacks the simulator can stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    /// MQTT publish flood (CICIoMT2024 `MQTT-DoS-Publish_Flood`): valid
    /// telemetry at 40 messages per second, within the edge's rate limit.
    PublishFlood,
    /// MQTT connect flood (`MQTT-DDoS-Connect_Flood`): TLS connections
    /// without a ward certificate, four per second, from one address.
    ConnectFlood,
    /// Connection churn: the device disconnects and reconnects every second.
    ConnectionChurn,
    /// Malformed payloads (`MQTT-Malformed_Data`): invalid JSON on the
    /// telemetry topic.
    MalformedPayload,
    /// Oversized payloads: beyond the edge's payload limit.
    OversizedPayload,
    /// Topic spoofing (`Spoofing`): telemetry on another device's topic.
    TopicSpoofing,
    /// Replay: an earlier captured message sent again.
    Replay,
    /// Data injection, impossible values: a heart rate of 400 bpm.
    ImpossibleValues,
    /// Data injection, impossible jumps: heart rate alternating by 90 bpm
    /// between readings a second apart (each value in range).
    ImpossibleJumps,
    /// Data injection, frozen values: every vital held constant.
    FrozenValues,
    /// A stolen certificate used from a second place while the device runs.
    StolenCertificate,
    /// Slow drip: the device opens a session and sends nothing.
    SlowDrip,
}

impl AttackKind {
    /// Every kind.
    pub const ALL: [AttackKind; 12] = [
        AttackKind::PublishFlood,
        AttackKind::ConnectFlood,
        AttackKind::ConnectionChurn,
        AttackKind::MalformedPayload,
        AttackKind::OversizedPayload,
        AttackKind::TopicSpoofing,
        AttackKind::Replay,
        AttackKind::ImpossibleValues,
        AttackKind::ImpossibleJumps,
        AttackKind::FrozenValues,
        AttackKind::StolenCertificate,
        AttackKind::SlowDrip,
    ];

    /// The snake_case name used in scenario files.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AttackKind::PublishFlood => "publish_flood",
            AttackKind::ConnectFlood => "connect_flood",
            AttackKind::ConnectionChurn => "connection_churn",
            AttackKind::MalformedPayload => "malformed_payload",
            AttackKind::OversizedPayload => "oversized_payload",
            AttackKind::TopicSpoofing => "topic_spoofing",
            AttackKind::Replay => "replay",
            AttackKind::ImpossibleValues => "impossible_values",
            AttackKind::ImpossibleJumps => "impossible_jumps",
            AttackKind::FrozenValues => "frozen_values",
            AttackKind::StolenCertificate => "stolen_certificate",
            AttackKind::SlowDrip => "slow_drip",
        }
    }

    /// The gateway alert kind (`anomaly.response.<kind>`) that detects it.
    #[must_use]
    pub fn expected_alert(self) -> &'static str {
        match self {
            AttackKind::PublishFlood => "message_flood",
            AttackKind::ConnectFlood => "auth_failure",
            AttackKind::ConnectionChurn => "connection_churn",
            AttackKind::MalformedPayload
            | AttackKind::OversizedPayload
            | AttackKind::TopicSpoofing
            | AttackKind::Replay
            | AttackKind::ImpossibleValues => "policy_violation",
            AttackKind::ImpossibleJumps => "implausible_change",
            AttackKind::FrozenValues => "flat_signal",
            AttackKind::StolenCertificate => "duplicate_session",
            AttackKind::SlowDrip => "silent_session",
        }
    }

    /// Whether the alert names the attacking address rather than the
    /// device (the attacker has no ward certificate).
    #[must_use]
    pub fn alert_names_peer(self) -> bool {
        self == AttackKind::ConnectFlood
    }
}

impl std::fmt::Display for AttackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
