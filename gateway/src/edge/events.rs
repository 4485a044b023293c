//! The edge's event seam: one place where every session event and every
//! packet decision passes, so detectors (anomaly detection, issue 12) can
//! watch the device network without touching the edge's controls.
//!
//! The edge is started with an optional [`EdgeObserver`]
//! ([`crate::edge::start`]) and calls [`EdgeObserver::observe`] with an
//! [`EdgeEvent`] at each of these points, in the session's own order:
//!
//! | point | event |
//! | --- | --- |
//! | connection refused before the device is known (capacity, TLS, certificate) | [`EdgeEvent::RefusedBeforeAuth`] |
//! | CONNECT refused (identity, enrolment, pin, last will, timeout, protocol level) | [`EdgeEvent::ConnectRefused`] |
//! | session admitted and relayed to the broker | [`EdgeEvent::SessionAdmitted`] |
//! | a device packet passed inspection (PUBLISH, SUBSCRIBE, PINGREQ, acks ...) | [`EdgeEvent::PacketAccepted`] |
//! | a policy violation (before or after CONNECT) | [`EdgeEvent::Violation`] |
//! | an admitted session ended, and why | [`EdgeEvent::SessionClosed`] |
//!
//! `observe` runs on the session's task, synchronously, at the moment of the
//! event (take `Instant::now()` there for timing); it must never block or
//! wait: an implementation copies what it needs and `try_send`s it into a
//! bounded queue of its own, counting (not waiting on) what does not fit.
//! Events are only built when an observer is installed.

use std::net::SocketAddr;

use wardgate_protocol::{DeviceId, DeviceMessage, TopicKind};

use super::frame::PacketKind;
use super::violation::Violation;
use crate::registry::DeviceState;

/// Something that happened at the edge.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EdgeEvent {
    /// A connection refused before its device was known: at
    /// `edge.max_connections` (`reason` `capacity`), or in the TLS handshake
    /// or the certificate identity.
    RefusedBeforeAuth {
        /// The remote address.
        peer: SocketAddr,
        /// Short label, as in the audit row and metric.
        reason: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// A device known from its certificate was refused at CONNECT.
    ConnectRefused {
        /// The device id from the certificate.
        device: DeviceId,
        /// The remote address.
        peer: SocketAddr,
        /// Short label (`not_enrolled`, `revoked`, `client_id_mismatch`, ...).
        reason: String,
        /// What went wrong, in words.
        detail: String,
    },
    /// A session was admitted and relayed to the broker.
    SessionAdmitted {
        /// The device.
        device: DeviceId,
        /// The remote address.
        peer: SocketAddr,
        /// MQTT version, `3.1.1` or `5`.
        protocol: &'static str,
        /// Its registry state at admission.
        state: DeviceState,
    },
    /// A device packet passed the edge's inspection and goes on (a PUBLISH
    /// after it was stored, if it is telemetry and the edge has a sink).
    PacketAccepted {
        /// The device.
        device: DeviceId,
        /// The MQTT packet type.
        kind: PacketKind,
        /// For a PUBLISH, the kind of topic.
        topic: Option<TopicKind>,
        /// For a PUBLISH, the payload size in bytes (0 otherwise).
        payload_bytes: usize,
        /// For a PUBLISH, the checked message (telemetry, status, OTA report).
        message: Option<DeviceMessage>,
        /// A QoS 1 resend of the device's last stored message: acknowledged
        /// again, not stored or forwarded a second time.
        duplicate: bool,
    },
    /// A policy violation; the session ends (or never started).
    Violation {
        /// The device.
        device: DeviceId,
        /// The remote address.
        peer: SocketAddr,
        /// What the device did wrong; [`Violation::reason`] is its label.
        violation: Violation,
    },
    /// An admitted session ended.
    SessionClosed {
        /// The device.
        device: DeviceId,
        /// The remote address.
        peer: SocketAddr,
        /// Short label: `violation`, `revoked`, `shutdown` or why the
        /// connection closed (`device closed the connection`, `idle timeout` ...).
        reason: String,
    },
}

/// Watches the edge. See the module docs: called on session tasks, must
/// never block (use `try_send` into a bounded queue).
pub trait EdgeObserver: Send + Sync + 'static {
    /// One event, at the moment it happens.
    fn observe(&self, event: &EdgeEvent);
}
