//! The detector's seat at the edge: an [`EdgeObserver`] that turns each
//! [`EdgeEvent`] into an [`Observation`] stamped with the time it happened
//! and hands it to the detector's [`Feed`] without waiting.
//!
//! Only what baselines need is copied: sizes, topic kinds, the readings of
//! telemetry; QoS 1 resends of the last stored message (`duplicate`) are
//! skipped, they are a device doing its job, not new behaviour. Packets
//! other than PUBLISH (PINGREQ, SUBSCRIBE, acks) do not count as publishing.

use chrono::Utc;
use wardgate_protocol::DeviceMessage;

use super::service::Feed;
use super::signal::{Observation, Signal};
use crate::edge::{EdgeEvent, EdgeObserver};

/// Feeds the detector from the edge.
#[derive(Debug, Clone)]
pub struct DetectorObserver {
    feed: Feed,
}

impl DetectorObserver {
    /// An observer feeding `feed`.
    #[must_use]
    pub fn new(feed: Feed) -> Self {
        Self { feed }
    }
}

/// The observation of `event` at the current time, if it is one the
/// detector uses.
#[must_use]
pub fn observation(event: &EdgeEvent) -> Option<Observation> {
    let at = Utc::now();
    let (peer, signal) = match event {
        EdgeEvent::RefusedBeforeAuth { peer, reason, .. } => (
            Some(*peer),
            Signal::Refused {
                device: None,
                reason: reason.clone(),
            },
        ),
        EdgeEvent::ConnectRefused {
            device,
            peer,
            reason,
            ..
        } => (
            Some(*peer),
            Signal::Refused {
                device: Some(device.clone()),
                reason: reason.clone(),
            },
        ),
        EdgeEvent::SessionAdmitted { device, peer, .. } => (
            Some(*peer),
            Signal::SessionOpened {
                device: device.clone(),
            },
        ),
        EdgeEvent::PacketAccepted {
            device,
            topic: Some(kind),
            payload_bytes,
            message,
            duplicate: false,
            ..
        } => (
            None,
            Signal::Publish {
                device: device.clone(),
                kind: *kind,
                size: *payload_bytes,
                readings: match message {
                    Some(DeviceMessage::Telemetry(t)) => Some(t.readings.clone()),
                    _ => None,
                },
            },
        ),
        EdgeEvent::Violation {
            device,
            peer,
            violation,
        } => (
            Some(*peer),
            Signal::Violation {
                device: device.clone(),
                reason: violation.reason().to_owned(),
                detail: violation.to_string(),
            },
        ),
        EdgeEvent::SessionClosed {
            device,
            peer,
            reason,
        } => (
            Some(*peer),
            Signal::SessionClosed {
                device: device.clone(),
                reason: reason.clone(),
            },
        ),
        _ => return None,
    };
    Some(Observation { at, peer, signal })
}

impl EdgeObserver for DetectorObserver {
    fn observe(&self, event: &EdgeEvent) {
        if let Some(obs) = observation(event) {
            self.feed.submit(obs);
        }
    }
}
