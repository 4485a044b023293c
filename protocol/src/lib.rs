//! The Wardgate wire contract between bedside devices and the ward gateway.
//!
//! Owns topic names (`wardgate/v1/devices/<id>/...`, [`topic`]), the
//! [`DeviceId`] and [`GatewayId`] types (checked once, by one charset and
//! length rule), the message types that travel on the topics
//! ([`Telemetry`], [`Status`], [`OtaOffer`], [`OtaReport`], [`Command`])
//! with their `schema` version, per-device `seq` and timestamp, and the
//! vital-sign kinds ([`VitalKind`]) with IEEE 11073 MDC code, UCUM unit and
//! physiological range, HTTP byte ranges of image downloads
//! ([`ByteRange`], [`ContentRange`]), and the token buckets behind every
//! rate limit ([`token_bucket`]: the edge's per-device publish limit, the
//! per-peer request limits of the admin API and the OTA server). No I/O.
//!
//! Where the controls of `docs/architecture.md` live here:
//!
//! | control | item |
//! | --- | --- |
//! | device and gateway ids never contain topic syntax | [`DeviceId::parse`], [`GatewayId::parse`] |
//! | only the v1 device topics exist | [`DeviceTopic::parse`], [`TopicKind::direction`] |
//! | schema version, structure and ranges | [`DeviceMessage::parse`], [`VitalKind::check`] |
//! | device-side offer check (Ed25519, length, hash, hardware, version) | [`verify_offer`] |
//! | per-peer request limits, `429` with `Retry-After` (both HTTP servers) | [`token_bucket::RequestLimit`], [`token_bucket::retry_after_secs`] |

pub mod byte_range;
pub mod device_id;
pub mod error;
pub mod gateway_id;
mod ident;
pub mod message;
pub mod offer;
pub mod token_bucket;
pub mod topic;
pub mod vitals;

pub use byte_range::{ByteRange, ContentRange};
pub use device_id::DeviceId;
pub use error::ProtocolError;
pub use gateway_id::GatewayId;
pub use message::{
    Command, CommandKind, DeviceActivity, DeviceMessage, OtaOffer, OtaOutcome, OtaReport, Reading,
    Status, Telemetry, SCHEMA_VERSION,
};
pub use offer::{verify_offer, ImageCheck, VerifiedOffer};
pub use topic::{topic, DeviceTopic, Direction, TopicKind, TOPIC_PREFIX};
pub use vitals::VitalKind;
