//! Upstream renderings of one internal vital-sign record: the device JSON as
//! received and FHIR R4 `Observation` resources.
//!
//! [`VitalRecord`] is the one internal shape (MDC code, value, UCUM unit,
//! device time, device id) that every renderer reads; [`records`] builds it
//! from a device's telemetry payload using the `wardgate-protocol` types.
//! Each [`Format`] has its own module and golden-file tests
//! (gateway/tests/uplink_render.rs).

pub mod fhir;
pub mod vital;

pub use vital::{records, Vital, VitalRecord};

use crate::uplink::outbox::PendingMessage;

/// An upstream rendering, chosen per deployment in `uplink.formats` (a
/// configuration value, so it is defined with the other settings).
pub use crate::config::Format;

/// Why a message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The stored payload is not a telemetry message this gateway reads.
    #[error("payload is not a telemetry message: {0}")]
    Parse(String),
    /// Serialising the rendering failed.
    #[error("cannot serialise rendering: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// Upstream topic of `format` for `device_id` under `prefix`.
#[must_use]
pub fn upstream_topic(prefix: &str, format: Format, device_id: &str) -> String {
    match format {
        Format::Json => format!("{prefix}/devices/{device_id}/telemetry"),
        Format::Fhir => format!("{prefix}/devices/{device_id}/fhir/Observation"),
    }
}

/// Upstream topic of the FHIR `Device` resource of `device_id` (retained).
#[must_use]
pub fn device_topic(prefix: &str, device_id: &str) -> String {
    format!("{prefix}/devices/{device_id}/fhir/Device")
}

/// Render `message` in `format`: zero or more upstream payloads.
///
/// # Errors
/// [`RenderError`] if the payload cannot be read for this format.
pub fn render(format: Format, message: &PendingMessage) -> Result<Vec<Vec<u8>>, RenderError> {
    match format {
        Format::Json => Ok(vec![message.payload.clone()]),
        Format::Fhir => {
            let records = records(&message.device_id, &message.payload)?;
            fhir::observations(&records, message.received_at)?
                .into_iter()
                .map(|o| serde_json::to_vec(&o).map_err(RenderError::from))
                .collect()
        }
    }
}
