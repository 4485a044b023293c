//! Topic names of the v1 contract: `wardgate/v1/devices/<id>/<kind>`.

use std::fmt;

use crate::device_id::DeviceId;
use crate::error::{truncate, ProtocolError};

/// Prefix of every device topic.
pub const TOPIC_PREFIX: &str = "wardgate/v1/devices/";

/// Who sends on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The device publishes, the gateway consumes.
    DeviceToGateway,
    /// The gateway publishes, the device subscribes.
    GatewayToDevice,
}

/// The leaf of a device topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `telemetry`: vital signs, device to gateway.
    Telemetry,
    /// `status`: retained device status, device to gateway.
    Status,
    /// `ota/offer`: firmware offer, gateway to device.
    OtaOffer,
    /// `ota/report`: update progress, device to gateway.
    OtaReport,
    /// `cmd`: commands, gateway to device.
    Cmd,
}

impl TopicKind {
    /// Every kind, in table order.
    pub const ALL: [TopicKind; 5] = [
        TopicKind::Telemetry,
        TopicKind::Status,
        TopicKind::OtaOffer,
        TopicKind::OtaReport,
        TopicKind::Cmd,
    ];

    /// The topic suffix after the device id.
    #[must_use]
    pub fn suffix(self) -> &'static str {
        match self {
            TopicKind::Telemetry => "telemetry",
            TopicKind::Status => "status",
            TopicKind::OtaOffer => "ota/offer",
            TopicKind::OtaReport => "ota/report",
            TopicKind::Cmd => "cmd",
        }
    }

    /// Who sends on this topic.
    #[must_use]
    pub fn direction(self) -> Direction {
        match self {
            TopicKind::Telemetry | TopicKind::Status | TopicKind::OtaReport => {
                Direction::DeviceToGateway
            }
            TopicKind::OtaOffer | TopicKind::Cmd => Direction::GatewayToDevice,
        }
    }

    fn from_suffix(suffix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.suffix() == suffix)
    }
}

/// A concrete device topic, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceTopic {
    /// Whose subtree.
    pub device: DeviceId,
    /// Which leaf.
    pub kind: TopicKind,
}

impl DeviceTopic {
    /// Build the topic for `device` and `kind`.
    #[must_use]
    pub fn new(device: DeviceId, kind: TopicKind) -> Self {
        Self { device, kind }
    }

    /// Parse a concrete topic name (no wildcards).
    ///
    /// # Errors
    /// [`ProtocolError::Topic`] if `topic` is not exactly one of the v1
    /// device topics.
    pub fn parse(topic: &str) -> Result<Self, ProtocolError> {
        let fail = |reason| ProtocolError::Topic {
            topic: truncate(topic, 200),
            reason,
        };
        let rest = topic
            .strip_prefix(TOPIC_PREFIX)
            .ok_or_else(|| fail("does not start with wardgate/v1/devices/"))?;
        let (id, suffix) = rest
            .split_once('/')
            .ok_or_else(|| fail("has no leaf after the device id"))?;
        let device = DeviceId::parse(id).map_err(|_| fail("device id segment is invalid"))?;
        let kind = TopicKind::from_suffix(suffix).ok_or_else(|| fail("unknown leaf"))?;
        Ok(Self { device, kind })
    }
}

impl fmt::Display for DeviceTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOPIC_PREFIX}{}/{}", self.device, self.kind.suffix())
    }
}

/// The topic for `device` and `kind` as a string.
#[must_use]
pub fn topic(device: &DeviceId, kind: TopicKind) -> String {
    format!("{TOPIC_PREFIX}{device}/{}", kind.suffix())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_every_kind() {
        let id = DeviceId::parse("pump-07").unwrap();
        for kind in TopicKind::ALL {
            let t = topic(&id, kind);
            assert_eq!(
                DeviceTopic::parse(&t).unwrap(),
                DeviceTopic::new(id.clone(), kind)
            );
        }
    }

    #[test]
    fn refuses_wildcards_and_foreign_trees() {
        for bad in [
            "#",
            "$SYS/#",
            "wardgate/v1/devices/+/telemetry",
            "wardgate/v1/devices/#",
            "wardgate/v1/devices/pump-07/telemetry/x",
            "wardgate/v1/devices/pump-07/",
            "wardgate/v2/devices/pump-07/telemetry",
            "wardgate/v1/devices//telemetry",
        ] {
            assert!(DeviceTopic::parse(bad).is_err(), "{bad} accepted");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,120}") {
            if let Ok(t) = DeviceTopic::parse(&s) {
                prop_assert_eq!(t.to_string(), s);
            }
        }
    }
}
