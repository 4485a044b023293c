//! The vocabulary of a ward's timeline ([`crate::ward::Timeline`]): the
//! kinds of bedside device, who acts ([`Actor`]), what they do
//! ([`Action`]) and when ([`Step`]), and the per-device plan
//! ([`Entry`], [`Planned`]) that attacks rewrite before `seq`s are given.
//!
//! A leaf module, so that the scenario file, the attacks and the timeline
//! builder can all speak of devices and steps without depending on each
//! other.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wardgate_protocol::{DeviceActivity, DeviceId, Reading};

use crate::patient::Measures;

/// The kinds of bedside device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Multi-parameter patient monitor.
    PatientMonitor,
    /// Pulse oximeter.
    PulseOximeter,
    /// Ventilator.
    Ventilator,
    /// Infusion pump.
    InfusionPump,
}

impl DeviceKind {
    /// What it measures.
    #[must_use]
    pub fn measures(self) -> Measures {
        match self {
            DeviceKind::PatientMonitor => Measures::Monitor,
            DeviceKind::PulseOximeter => Measures::Oximeter,
            DeviceKind::Ventilator => Measures::Ventilator,
            DeviceKind::InfusionPump => Measures::Pump,
        }
    }

    /// Model name for the registry.
    #[must_use]
    pub fn model(self) -> &'static str {
        match self {
            DeviceKind::PatientMonitor => "PM-100",
            DeviceKind::PulseOximeter => "OX-20",
            DeviceKind::Ventilator => "VT-300",
            DeviceKind::InfusionPump => "IP-50",
        }
    }

    /// What it reports in its status.
    #[must_use]
    pub fn activity(self) -> DeviceActivity {
        match self {
            DeviceKind::InfusionPump | DeviceKind::Ventilator => DeviceActivity::TherapyInProgress,
            _ => DeviceActivity::Idle,
        }
    }
}

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Actor {
    /// The device itself, with its certificate.
    Device(DeviceId),
    /// Someone else holding the device's certificate and key.
    Thief(DeviceId),
    /// A party without a ward certificate.
    Stranger,
}

/// What an actor does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open an MQTT session over mutual TLS (no-op when one is open).
    Connect,
    /// Close the session cleanly.
    Disconnect,
    /// Open a TLS connection without a ward certificate.
    ConnectUntrusted,
    /// Publish at QoS 1 (connecting first if no session is open).
    Publish {
        /// Topic.
        topic: String,
        /// Payload bytes, exactly as sent.
        payload: Vec<u8>,
        /// RETAIN flag.
        retain: bool,
    },
}

/// One step of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Offset from the start of the scenario.
    pub at: Duration,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: Action,
}

/// A device of the ward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WardDevice {
    /// Its id.
    pub id: DeviceId,
    /// Its kind.
    pub kind: DeviceKind,
    /// Its reading interval.
    pub interval: Duration,
}

/// How a planned reading is altered by an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Untouched.
    None,
    /// Heart rate moved by +90 (`true`) or kept low (`false`), alternating.
    Jump(bool),
    /// Every value held at what it was when the attack began.
    Freeze,
}

/// Something planned for a device, before `seq`s are assigned.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// Open a session.
    Connect,
    /// Close it.
    Disconnect,
    /// A stranger's connection without certificate.
    ConnectUntrusted,
    /// The status message.
    Status,
    /// Telemetry from the patient model, maybe tampered.
    Vitals(Tamper),
    /// Telemetry with these readings.
    Readings(Vec<Reading>),
    /// Bytes on the device's telemetry topic, no `seq`.
    Raw(Vec<u8>),
    /// Telemetry with the next `seq`, on another device's topic.
    Spoof(DeviceId),
    /// The telemetry payload sent `back` messages ago, again.
    Replay(usize),
}

/// One planned entry of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// When.
    pub at: Duration,
    /// Who (the device, or an attacker using it).
    pub actor: Actor,
    /// What.
    pub what: Planned,
}
