//! What a connected device can do wrong, in one enum.
//!
//! Every control of the edge ([`crate::edge::acl`], [`crate::edge::payload`],
//! [`crate::edge::replay`], [`crate::edge::rate_limit`], the MQTT decoding
//! in the session) reports a [`Violation`]; the session turns any of them
//! into a disconnect, an audit row and `wardgate_edge_violations_total`
//! under the short [`Violation::reason`] label. It lives apart from the
//! controls so that each of them depends on it and none on another.

use wardgate_protocol::ProtocolError;

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
