//! Per-packet policy for device connections: the one place that decides.
//!
//! Every CONNECT goes through [`check_connect`], every PUBLISH through
//! [`DevicePolicy::check_publish`] and every SUBSCRIBE / UNSUBSCRIBE filter
//! through [`DevicePolicy::check_filter`] before anything reaches the broker.
//! A device may only touch its own subtree, `wardgate/v1/devices/<id>/...`,
//! and only in the directions of DESIGN.md's table; a quarantined device may
//! only publish `status` and receive `cmd` and `ota/offer`. Anything else is
//! a [`Violation`] that the edge turns into a disconnect, an audit row and a
//! metric. Replay ([`SeqTracker`]) and rate ([`TokenBucket`]) limits live
//! here too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use wardgate_protocol::{
    DeviceId, DeviceMessage, DeviceTopic, Direction, ProtocolError, TopicKind, TOPIC_PREFIX,
};

use crate::edge::tls::PeerIdentity;
use crate::registry::{DeviceRecord, DeviceState};

/// Why a CONNECT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefusal {
    /// MQTT client id differs from the certificate's device id.
    #[error("client id {client_id:?} differs from certificate device id {cert_id}")]
    ClientIdMismatch {
        /// What the CONNECT said.
        client_id: String,
        /// What the certificate says.
        cert_id: DeviceId,
    },
    /// Not in the registry.
    #[error("device {0} is not enrolled")]
    NotEnrolled(DeviceId),
    /// Revoked in the registry.
    #[error("device {0} is revoked")]
    Revoked(DeviceId),
    /// The registry pins another certificate.
    #[error("certificate fingerprint {presented} is not the one enrolled for {device}")]
    CertificateNotPinned {
        /// Device.
        device: DeviceId,
        /// Presented fingerprint.
        presented: String,
    },
    /// CONNECT carried a last will (not part of the v1 contract: a will would
    /// bypass payload and replay checks).
    #[error("last will messages are not allowed")]
    LastWill,
}

impl ConnectRefusal {
    /// Short label for metrics and audit detail.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ClientIdMismatch { .. } => "client_id_mismatch",
            Self::NotEnrolled(_) => "not_enrolled",
            Self::Revoked(_) => "revoked",
            Self::CertificateNotPinned { .. } => "certificate_not_pinned",
            Self::LastWill => "last_will",
        }
    }
}

/// Decide a CONNECT: the device's state if allowed.
///
/// # Errors
/// The [`ConnectRefusal`].
pub fn check_connect(
    identity: &PeerIdentity,
    client_id: &str,
    record: Option<&DeviceRecord>,
    has_will: bool,
) -> Result<DeviceState, ConnectRefusal> {
    if client_id != identity.device_id.as_str() {
        return Err(ConnectRefusal::ClientIdMismatch {
            client_id: client_id.chars().take(80).collect(),
            cert_id: identity.device_id.clone(),
        });
    }
    let record = record.ok_or_else(|| ConnectRefusal::NotEnrolled(identity.device_id.clone()))?;
    if record.state == DeviceState::Revoked {
        return Err(ConnectRefusal::Revoked(identity.device_id.clone()));
    }
    if let Some(pinned) = &record.cert_fingerprint {
        if pinned != &identity.fingerprint {
            return Err(ConnectRefusal::CertificateNotPinned {
                device: identity.device_id.clone(),
                presented: identity.fingerprint.clone(),
            });
        }
    }
    if has_will {
        return Err(ConnectRefusal::LastWill);
    }
    Ok(record.state)
}

/// A policy violation by a connected device.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Violation {
    /// PUBLISH or filter outside the device's subtree.
    #[error("topic {topic:?} is outside the device's own subtree")]
    OutsideSubtree {
        /// The topic or filter.
        topic: String,
    },
    /// PUBLISH on a gateway-to-device topic.
    #[error("devices may not publish on {topic:?}")]
    WrongDirection {
        /// The topic.
        topic: String,
    },
    /// A quarantined device went beyond status / cmd / ota.
    #[error("device is quarantined: {topic:?} not allowed")]
    Quarantined {
        /// The topic or filter.
        topic: String,
    },
    /// A filter that is not a valid MQTT filter.
    #[error("invalid subscription filter {filter:?}")]
    InvalidFilter {
        /// The filter.
        filter: String,
    },
    /// Payload too large.
    #[error("payload of {size} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Payload failed schema or range checks.
    #[error("payload refused: {0}")]
    Payload(ProtocolError),
    /// `seq` not strictly increasing.
    #[error("replayed or out-of-order seq {seq} (last accepted {last})")]
    Replay {
        /// Received.
        seq: u64,
        /// Last accepted.
        last: u64,
    },
    /// Over the per-device rate.
    #[error("publish rate limit exceeded")]
    RateLimited,
    /// QoS 2 or invalid QoS.
    #[error("QoS {0} not allowed (0 or 1 only)")]
    Qos(u8),
    /// RETAIN outside the status topic.
    #[error("retain is only allowed on the status topic")]
    Retain,
    /// MQTT 5 topic aliases (would hide the topic from the policy).
    #[error("topic aliases are not allowed")]
    TopicAlias,
    /// The byte stream was not valid MQTT or broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The telemetry sink (outbox) refused or failed: not the device's
    /// fault, but it must not get a PUBACK, so the session ends.
    #[error("telemetry could not be stored: {0}")]
    NotStored(String),
    /// The device stopped reading and its outbound queue filled.
    #[error("device does not read its messages; outbound queue full")]
    SlowConsumer,
}

impl Violation {
    /// Short label for metrics and audit detail.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::OutsideSubtree { .. } => "acl_topic",
            Self::WrongDirection { .. } => "acl_direction",
            Self::Quarantined { .. } => "quarantined",
            Self::InvalidFilter { .. } => "invalid_filter",
            Self::PayloadTooLarge { .. } => "payload_size",
            Self::Payload(ProtocolError::OutOfRange { .. }) => "out_of_range",
            Self::Payload(ProtocolError::Schema { .. }) => "schema_version",
            Self::Payload(ProtocolError::Malformed { .. }) => "malformed_payload",
            Self::Payload(_) => "invalid_payload",
            Self::Replay { .. } => "replay",
            Self::RateLimited => "rate_limit",
            Self::Qos(_) => "qos",
            Self::Retain => "retain",
            Self::TopicAlias => "topic_alias",
            Self::Protocol(_) => "protocol",
            Self::NotStored(_) => "not_stored",
            Self::SlowConsumer => "slow_consumer",
        }
    }
}

/// The policy for one connected device.
#[derive(Debug, Clone)]
pub struct DevicePolicy {
    device: DeviceId,
    own_prefix: String,
    confined: bool,
    max_payload: usize,
}

impl DevicePolicy {
    /// Policy for `device`, confined if quarantined.
    #[must_use]
    pub fn new(device: DeviceId, state: DeviceState, max_payload: usize) -> Self {
        let own_prefix = format!("{TOPIC_PREFIX}{device}/");
        Self {
            device,
            own_prefix,
            confined: state == DeviceState::Quarantined,
            max_payload,
        }
    }

    /// Apply a registry state change (revocation is handled by the caller).
    pub fn set_state(&mut self, state: DeviceState) {
        self.confined = state != DeviceState::Active;
    }

    /// Whether the device is confined.
    #[must_use]
    pub fn is_confined(&self) -> bool {
        self.confined
    }

    /// Check a PUBLISH from the device and parse its payload.
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
        if self.confined && parsed.kind != TopicKind::Status {
            return Err(Violation::Quarantined {
                topic: topic.to_owned(),
            });
        }
        if retain && parsed.kind != TopicKind::Status {
            return Err(Violation::Retain);
        }
        if payload.len() > self.max_payload {
            return Err(Violation::PayloadTooLarge {
                size: payload.len(),
                max: self.max_payload,
            });
        }
        let message = DeviceMessage::parse(parsed.kind, payload).map_err(Violation::Payload)?;
        Ok((parsed.kind, message))
    }

    /// Check a SUBSCRIBE or UNSUBSCRIBE filter.
    ///
    /// Allowed: a valid filter inside the device's own subtree. Confined
    /// devices may only name their `cmd` and `ota/offer` topics exactly.
    ///
    /// # Errors
    /// The [`Violation`].
    pub fn check_filter(&self, filter: &str) -> Result<(), Violation> {
        let outside = || Violation::OutsideSubtree {
            topic: filter.chars().take(200).collect(),
        };
        let rest = filter.strip_prefix(&self.own_prefix).ok_or_else(outside)?;
        if rest.is_empty() || rest.len() > 64 {
            return Err(Violation::InvalidFilter {
                filter: filter.to_owned(),
            });
        }
        let levels: Vec<&str> = rest.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            let ok = match *level {
                "#" => i == levels.len() - 1,
                "+" => true,
                l => !l.is_empty() && !l.contains(['#', '+']) && !l.chars().any(char::is_control),
            };
            if !ok {
                return Err(Violation::InvalidFilter {
                    filter: filter.to_owned(),
                });
            }
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

/// Last accepted `seq` per device, shared by all sessions of one edge, so a
/// replay across reconnects is refused too. Seeded from the registry's
/// `last_seq` on CONNECT and saved back when a session ends, so it also
/// survives a gateway restart (a crash loses the values of the sessions
/// that were live).
#[derive(Debug, Default)]
pub struct SeqTracker {
    last: Mutex<HashMap<DeviceId, u64>>,
}

impl SeqTracker {
    /// Seed the last accepted `seq` of `device` from storage, unless this
    /// tracker already knows a value (which is then at least as fresh).
    pub fn seed(&self, device: &DeviceId, stored: Option<u64>) {
        if let Some(seq) = stored {
            let mut map = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(device.clone()).or_insert(seq);
        }
    }

    /// The last accepted `seq` of `device`.
    #[must_use]
    pub fn last(&self, device: &DeviceId) -> Option<u64> {
        let map = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(device).copied()
    }

    /// Accept `seq` for `device` if it is strictly greater than the last one.
    ///
    /// # Errors
    /// [`Violation::Replay`] otherwise.
    pub fn advance(&self, device: &DeviceId, seq: u64) -> Result<(), Violation> {
        let mut map = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get_mut(device) {
            Some(last) if seq <= *last => Err(Violation::Replay { seq, last: *last }),
            Some(last) => {
                *last = seq;
                Ok(())
            }
            None => {
                map.insert(device.clone(), seq);
                Ok(())
            }
        }
    }
}

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    #[must_use]
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        Self {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Take one token at `now`, if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

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
    }

    #[test]
    fn seq_and_rate() {
        let t = SeqTracker::default();
        let d = id("a");
        t.advance(&d, 5).unwrap();
        assert!(matches!(
            t.advance(&d, 5),
            Err(Violation::Replay { seq: 5, last: 5 })
        ));
        assert!(t.advance(&d, 4).is_err());
        t.advance(&d, 6).unwrap();
        t.advance(&id("b"), 1).unwrap();

        let start = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, start);
        assert!(b.try_take(start) && b.try_take(start) && b.try_take(start));
        assert!(!b.try_take(start));
        assert!(b.try_take(start + Duration::from_millis(150)));
    }
}
