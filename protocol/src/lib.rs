//! The Wardgate wire contract between bedside devices and the ward gateway.
//!
//! Owns topic names (`wardgate/v1/devices/<id>/...`, [`topic`]), the
//! [`DeviceId`] type (checked once: charset and length), the message types
//! that travel on the topics ([`Telemetry`], [`Status`], [`OtaOffer`],
//! [`OtaReport`], [`Command`]) with their `schema` version, per-device `seq`
//! and timestamp, and the vital-sign kinds ([`VitalKind`]) with IEEE 11073
//! MDC code, UCUM unit and physiological range. No I/O.
//!
//! Where DESIGN.md's controls live here:
//!
//! | control | item |
//! | --- | --- |
//! | device id never contains topic syntax | [`DeviceId::parse`] |
//! | only the v1 device topics exist | [`DeviceTopic::parse`], [`TopicKind::direction`] |
//! | schema version, structure and ranges | [`DeviceMessage::parse`], [`VitalKind::check`] |
//! | device-side offer check (Ed25519, length, hash, hardware, version) | [`verify_offer`] |

pub mod device_id;
pub mod error;
pub mod message;
pub mod offer;
pub mod topic;
pub mod vitals;

pub use device_id::DeviceId;
pub use error::ProtocolError;
pub use message::{
    Command, CommandKind, DeviceActivity, DeviceMessage, OtaOffer, OtaOutcome, OtaReport, Reading,
    Status, Telemetry, SCHEMA_VERSION,
};
pub use offer::{verify_offer, ImageCheck, VerifiedOffer};
pub use topic::{topic, DeviceTopic, Direction, TopicKind, TOPIC_PREFIX};
pub use vitals::VitalKind;
