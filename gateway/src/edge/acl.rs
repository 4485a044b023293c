//! Topic access control: which topics a device may publish on and which
//! filters it may subscribe to.
//!
//! A device may only touch its own subtree, `wardgate/v1/devices/<id>/...`,
//! and only in the directions of the MQTT contract: it publishes
//! `telemetry`, `status` and `ota/report`, and receives `cmd` and
//! `ota/offer`. QoS is 0 or 1, and only `status` may be retained. A
//! quarantined device is confined further: it may only publish `status` and
//! `ota/report`, and subscribe to exactly its `cmd` and `ota/offer` topics.
//! It stays in rollouts (a security update may be why it is quarantined),
//! so it must be able to say how its update went; its telemetry stays out.
//! Everything else is a [`Violation`].

use wardgate_protocol::{DeviceId, DeviceTopic, Direction, TopicKind, TOPIC_PREFIX};

use super::violation::Violation;
use crate::registry::DeviceState;

/// Longest part of a filter after the device's own prefix.
const MAX_FILTER_REST: usize = 64;

/// The topic rules for one connected device.
#[derive(Debug, Clone)]
pub struct TopicAcl {
    device: DeviceId,
    own_prefix: String,
    confined: bool,
}

impl TopicAcl {
    /// Rules for `device`, confined if quarantined.
    #[must_use]
    pub fn new(device: DeviceId, state: DeviceState) -> Self {
        let own_prefix = format!("{TOPIC_PREFIX}{device}/");
        Self {
            device,
            own_prefix,
            confined: state == DeviceState::Quarantined,
        }
    }

    /// Apply a registry state change: anything but active confines
    /// (revocation is handled by the caller, which ends the session).
    pub fn set_state(&mut self, state: DeviceState) {
        self.confined = state != DeviceState::Active;
    }

    /// Whether the device is confined.
    #[must_use]
    pub fn is_confined(&self) -> bool {
        self.confined
    }

    /// Check the topic, QoS and RETAIN flag of a PUBLISH from the device;
    /// the kind of topic if allowed.
    ///
    /// # Errors
    /// [`Violation::Qos`], [`Violation::OutsideSubtree`],
    /// [`Violation::WrongDirection`], [`Violation::Quarantined`] or
    /// [`Violation::Retain`], checked in that order.
    pub fn check_publish(
        &self,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> Result<TopicKind, Violation> {
        if qos > 1 {
            return Err(Violation::Qos(qos));
        }
        let parsed = DeviceTopic::parse(topic).map_err(|_| Violation::OutsideSubtree {
            topic: topic.chars().take(200).collect(),
        })?;
        if parsed.device != self.device {
            return Err(Violation::OutsideSubtree {
                topic: topic.to_owned(),
            });
        }
        if parsed.kind.direction() != Direction::DeviceToGateway {
            return Err(Violation::WrongDirection {
                topic: topic.to_owned(),
            });
        }
        if self.confined && !matches!(parsed.kind, TopicKind::Status | TopicKind::OtaReport) {
            return Err(Violation::Quarantined {
                topic: topic.to_owned(),
            });
        }
        if retain && parsed.kind != TopicKind::Status {
            return Err(Violation::Retain);
        }
        Ok(parsed.kind)
    }

    /// Check a SUBSCRIBE or UNSUBSCRIBE filter.
    ///
    /// Allowed: a valid filter inside the device's own subtree. Confined
    /// devices may only name their `cmd` and `ota/offer` topics exactly.
    ///
    /// # Errors
    /// [`Violation::OutsideSubtree`], [`Violation::InvalidFilter`] or
    /// [`Violation::Quarantined`].
    pub fn check_filter(&self, filter: &str) -> Result<(), Violation> {
        let outside = || Violation::OutsideSubtree {
            topic: filter.chars().take(200).collect(),
        };
        let rest = filter.strip_prefix(&self.own_prefix).ok_or_else(outside)?;
        if rest.is_empty() || rest.len() > MAX_FILTER_REST || !valid_levels(rest) {
            return Err(Violation::InvalidFilter {
                filter: filter.to_owned(),
            });
        }
        if self.confined {
            let exact_inbound = [TopicKind::Cmd, TopicKind::OtaOffer]
                .iter()
                .any(|k| k.suffix() == rest);
            if !exact_inbound {
                return Err(Violation::Quarantined {
                    topic: filter.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Whether the levels of a filter are valid MQTT: `#` only as the last
/// level, `+` only as a whole level, no empty levels or control characters.
fn valid_levels(rest: &str) -> bool {
    let levels: Vec<&str> = rest.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.is_empty() && !l.contains(['#', '+']) && !l.chars().any(char::is_control),
    })
}
