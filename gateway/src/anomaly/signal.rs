//! What the detector is told: one [`Observation`] per session event and per
//! packet the edge saw, each with the time it happened.
//!
//! The time is an input, never read from a clock inside the detector, so
//! the same detector runs on live traffic (the edge's events stamped on
//! arrival, see [`super::observer`]) and on a simulated ward in simulated
//! time (an hour of 50 devices in seconds, `gateway/benches/anomaly_eval.rs`).
//! The shape mirrors the edge's events but keeps only what behaviour
//! baselines need: no payload bytes, only their size and, for telemetry,
//! the parsed readings.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use wardgate_protocol::{DeviceId, Reading, TopicKind};

/// One thing the edge saw, at `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// When it happened (wall clock live, simulated in an evaluation).
    pub at: DateTime<Utc>,
    /// The remote address of the connection, when the event carries it
    /// (session events and refusals do; accepted packets belong to the
    /// device's current session).
    pub peer: Option<SocketAddr>,
    /// What happened.
    pub signal: Signal,
}

/// The kinds of observation.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// A device passed admission: its session is open.
    SessionOpened {
        /// The device (from its certificate).
        device: DeviceId,
    },
    /// A device's session ended (`reason` as the edge words it).
    SessionClosed {
        /// The device.
        device: DeviceId,
        /// Why, e.g. `idle timeout`, `device closed the connection`.
        reason: String,
    },
    /// A connection was refused before or at CONNECT: TLS failure, no or
    /// unknown certificate, client id mismatch, unknown or revoked device.
    Refused {
        /// The device, when its certificate was readable.
        device: Option<DeviceId>,
        /// The edge's short reason label.
        reason: String,
    },
    /// A PUBLISH passed every edge control.
    Publish {
        /// The device.
        device: DeviceId,
        /// The topic it was published on.
        kind: TopicKind,
        /// Payload size in bytes.
        size: usize,
        /// The readings, for telemetry.
        readings: Option<Vec<Reading>>,
    },
    /// A device broke the edge's policy (the edge disconnected it).
    Violation {
        /// The device.
        device: DeviceId,
        /// The edge's short reason label (`acl_topic`, `replay`, ...).
        reason: String,
        /// The edge's description.
        detail: String,
    },
}

impl Signal {
    /// The device this signal is about, when known.
    #[must_use]
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Signal::SessionOpened { device }
            | Signal::SessionClosed { device, .. }
            | Signal::Publish { device, .. }
            | Signal::Violation { device, .. } => Some(device),
            Signal::Refused { device, .. } => device.as_ref(),
        }
    }
}
