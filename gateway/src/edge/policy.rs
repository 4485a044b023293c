//! Per-packet policy for device connections: the one place that decides
//! what a connected device may send.
//!
//! Each control has its own module, named for it, so an auditor finds it
//! under its own name:
//!
//! | control | module |
//! | --- | --- |
//! | CONNECT: client id = certificate, enrolled, not revoked, pinned certificate, no last will | [`crate::edge::admission`] |
//! | topic subtree and direction, QoS, RETAIN, quarantine confinement | [`crate::edge::acl`] |
//! | payload size, schema version, physiological ranges | [`crate::edge::payload`] |
//! | `seq` strictly increasing per device (replay) | [`crate::edge::replay`] |
//! | per-device publish rate | [`crate::edge::rate_limit`] |
//! | what a violation is, and its metric label | [`crate::edge::violation`] |
//!
//! [`DevicePolicy`] joins the ACL and the payload checks for one device;
//! the session applies them, with the rate limit and the replay tracker, to
//! every packet in the order its inspection documents. Anything refused is a
//! [`Violation`] that the edge turns into a disconnect, an audit row and a
//! metric. The controls' types are re-exported here.

use wardgate_protocol::{DeviceId, DeviceMessage, TopicKind};

pub use super::acl::TopicAcl;
pub use super::admission::{check_connect, ConnectRefusal};
pub use super::rate_limit::TokenBucket;
pub use super::replay::SeqTracker;
pub use super::violation::Violation;
use crate::registry::DeviceState;

/// The topic and payload policy for one connected device.
#[derive(Debug, Clone)]
pub struct DevicePolicy {
    acl: TopicAcl,
    max_payload: usize,
}

impl DevicePolicy {
    /// Policy for `device`, confined if quarantined, with payloads of at
    /// most `max_payload` bytes.
    #[must_use]
    pub fn new(device: DeviceId, state: DeviceState, max_payload: usize) -> Self {
        Self {
            acl: TopicAcl::new(device, state),
            max_payload,
        }
    }

    /// Apply a registry state change (revocation is handled by the caller).
    pub fn set_state(&mut self, state: DeviceState) {
        self.acl.set_state(state);
    }

    /// Whether the device is confined.
    #[must_use]
    pub fn is_confined(&self) -> bool {
        self.acl.is_confined()
    }

    /// Check a PUBLISH from the device (ACL, then payload) and parse its
    /// payload.
    ///
    /// # Errors
    /// The [`Violation`].
    pub fn check_publish(
        &self,
        topic: &str,
        qos: u8,
        retain: bool,
        payload: &[u8],
    ) -> Result<(TopicKind, DeviceMessage), Violation> {
        let kind = self.acl.check_publish(topic, qos, retain)?;
        let message = super::payload::check(kind, payload, self.max_payload)?;
        Ok((kind, message))
    }

    /// Check a SUBSCRIBE or UNSUBSCRIBE filter (see [`TopicAcl::check_filter`]).
    ///
    /// # Errors
    /// The [`Violation`].
    pub fn check_filter(&self, filter: &str) -> Result<(), Violation> {
        self.acl.check_filter(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::id;

    fn telemetry(seq: u64, hr: f64) -> Vec<u8> {
        format!(r#"{{"schema":1,"seq":{seq},"ts":"2026-01-01T00:00:00Z","readings":[{{"kind":"heart_rate","value":{hr}}}]}}"#).into_bytes()
    }

    #[test]
    fn publish_rules() {
        let p = DevicePolicy::new(id("pump-1"), DeviceState::Active, 1024);
        let own = "wardgate/v1/devices/pump-1/telemetry";
        assert!(p.check_publish(own, 1, false, &telemetry(1, 70.0)).is_ok());
        let r = |t, q, ret, pl: &[u8]| p.check_publish(t, q, ret, pl).unwrap_err().reason();
        assert_eq!(
            r(
                "wardgate/v1/devices/pump-2/telemetry",
                1,
                false,
                &telemetry(1, 70.0)
            ),
            "acl_topic"
        );
        assert_eq!(
            r("wardgate/v1/devices/pump-1/cmd", 1, false, b"{}"),
            "acl_direction"
        );
        assert_eq!(r("$SYS/x", 1, false, b"{}"), "acl_topic");
        assert_eq!(r(own, 2, false, &telemetry(1, 70.0)), "qos");
        assert_eq!(r(own, 1, true, &telemetry(1, 70.0)), "retain");
        assert_eq!(r(own, 1, false, b"{nope"), "malformed_payload");
        assert_eq!(r(own, 1, false, &telemetry(1, 999.0)), "out_of_range");
        assert_eq!(r(own, 1, false, &vec![b' '; 2000]), "payload_size");
    }

    #[test]
    fn filter_rules_and_quarantine() {
        let mut p = DevicePolicy::new(id("pump-1"), DeviceState::Active, 1024);
        for ok in [
            "wardgate/v1/devices/pump-1/cmd",
            "wardgate/v1/devices/pump-1/ota/+",
            "wardgate/v1/devices/pump-1/#",
        ] {
            assert!(p.check_filter(ok).is_ok(), "{ok}");
        }
        for bad in [
            "#",
            "+/#",
            "$SYS/#",
            "wardgate/v1/devices/+/cmd",
            "wardgate/v1/devices/#",
            "wardgate/v1/devices/pump-1/#/x",
            "wardgate/v1/devices/pump-1/a+",
            "wardgate/v1/devices/pump-10/cmd",
            "$share/g/wardgate/v1/devices/pump-1/cmd",
        ] {
            assert!(p.check_filter(bad).is_err(), "{bad}");
        }
        p.set_state(DeviceState::Quarantined);
        assert!(p.check_filter("wardgate/v1/devices/pump-1/cmd").is_ok());
        assert!(p.check_filter("wardgate/v1/devices/pump-1/#").is_err());
        let e = p
            .check_publish(
                "wardgate/v1/devices/pump-1/telemetry",
                1,
                false,
                &telemetry(1, 70.0),
            )
            .unwrap_err();
        assert_eq!(e.reason(), "quarantined");
        let status = br#"{"schema":1,"seq":2,"ts":"2026-01-01T00:00:00Z","activity":"idle","firmware_version":"1.0.0"}"#;
        assert!(p
            .check_publish("wardgate/v1/devices/pump-1/status", 1, true, status)
            .is_ok());
        // A quarantined device still reports on an update it was offered.
        let report = br#"{"schema":1,"seq":3,"ts":"2026-01-01T00:00:00Z","campaign_id":"c1","version":"2.0.0","outcome":"healthy"}"#;
        assert!(p
            .check_publish("wardgate/v1/devices/pump-1/ota/report", 1, false, report)
            .is_ok());
    }
}
