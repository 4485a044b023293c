//! Upstream renderings of one internal vital-sign record: the device JSON as
//! received and FHIR R4 `Observation` resources.
//!
//! [`VitalRecord`] is the one internal shape (device id, MDC code and UCUM
//! unit through its [`wardgate_protocol::vitals::VitalKind`], value, device
//! time, `seq`) that the record-based renderers read; [`records`] builds it
//! from a device's telemetry payload using the `wardgate-protocol` types.
//! [`render`] takes a [`Message`] (who sent what, and when it arrived) and
//! renders it in one [`Format`]. FHIR resource ids come from the injective
//! mapping of [`fhir_id`]. Each format has its own module and golden-file
//! tests (gateway/tests/uplink_render.rs). Nothing here knows where a
//! message is stored.

mod error;
pub mod fhir;
pub mod fhir_id;
pub mod vital;

use chrono::{DateTime, Utc};
use wardgate_protocol::DeviceId;

pub use error::RenderError;
pub use fhir_id::FhirId;
pub use vital::{records, VitalRecord};

/// An upstream rendering, chosen per deployment in `uplink.formats` (a
/// configuration value, so it is defined with the other settings).
pub use crate::config::Format;

/// One accepted telemetry message, as the renderers read it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The device that sent it (from its certificate).
    pub device_id: &'a DeviceId,
    /// When the gateway received it.
    pub received_at: DateTime<Utc>,
    /// The telemetry payload exactly as received.
    pub payload: &'a [u8],
}

/// Upstream topic of `format` for `device_id` under `prefix`.
#[must_use]
pub fn upstream_topic(prefix: &str, format: Format, device_id: &DeviceId) -> String {
    match format {
        Format::Json => format!("{prefix}/devices/{device_id}/telemetry"),
        Format::Fhir => format!("{prefix}/devices/{device_id}/fhir/Observation"),
    }
}

/// Upstream topic of the FHIR `Device` resource of `device_id` (retained).
#[must_use]
pub fn device_topic(prefix: &str, device_id: &DeviceId) -> String {
    format!("{prefix}/devices/{device_id}/fhir/Device")
}

/// Render `message` in `format`: zero or more upstream payloads.
///
/// # Errors
/// [`RenderError`] if the payload cannot be read for this format.
pub fn render(format: Format, message: &Message<'_>) -> Result<Vec<Vec<u8>>, RenderError> {
    match format {
        Format::Json => Ok(vec![message.payload.to_vec()]),
        Format::Fhir => {
            let records = records(message.device_id, message.payload)?;
            fhir::observations(&records, message.received_at)?
                .into_iter()
                .map(|o| serde_json::to_vec(&o).map_err(RenderError::from))
                .collect()
        }
    }
}
