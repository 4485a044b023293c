//! Payload checks: size, schema version and physiological ranges.
//!
//! A PUBLISH that passed the [`crate::edge::acl`] is parsed here as the
//! message its topic carries (`wardgate-protocol` owns the types, the schema
//! version and the ranges). A payload over `edge.max_payload_bytes` is
//! refused before it is parsed.

use wardgate_protocol::{DeviceMessage, TopicKind};

use super::violation::Violation;

/// Check the size of `payload` against `max` and parse it as a message of
/// `kind`.
///
/// # Errors
/// [`Violation::PayloadTooLarge`], or [`Violation::Payload`] naming the
/// schema or range rule that was broken.
pub fn check(kind: TopicKind, payload: &[u8], max: usize) -> Result<DeviceMessage, Violation> {
    if payload.len() > max {
        return Err(Violation::PayloadTooLarge {
            size: payload.len(),
            max,
        });
    }
    DeviceMessage::parse(kind, payload).map_err(Violation::Payload)
}
