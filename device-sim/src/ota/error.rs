//! The one error type of the device's update machinery.
//!
//! Refusals of an offer are not errors here: they are reported to the
//! gateway on `ota/report` (see [`crate::ota::client`]). An [`OtaError`] is a
//! fault of the device itself (its state folder, its TLS material, its MQTT
//! session) that the operator of the simulator has to act on.

use std::path::PathBuf;

/// A fault of the simulated device's update machinery.
#[derive(Debug, thiserror::Error)]
pub enum OtaError {
    /// A file of the state folder could not be read or written.
    #[error("cannot {action} {path}: {source}; check that the device state folder exists and is writable")]
    State {
        /// What was being done (`read`, `write`, `create`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A state file does not parse (damaged or from another build).
    #[error("device state file {path} is not valid: {source}; move the state folder away to start the device from its factory state")]
    StateFormat {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A state file holds a value no correct build writes.
    #[error("device state file {path}: {reason}; move the state folder away to start the device from its factory state")]
    StateInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state folder belongs to a device built differently.
    #[error("device state folder {path} belongs to a device built with {field} {stored:?}, not {given:?}; give the same {field} as at first boot or use a new state folder")]
    StateMismatch {
        /// The state folder.
        path: PathBuf,
        /// Which build setting differs (`hardware_id`, `manufacturer_key`).
        field: &'static str,
        /// The value in the state folder.
        stored: String,
        /// The value given now.
        given: String,
    },
    /// The HTTPS client for image downloads could not be built.
    #[error("cannot build the HTTPS client for firmware downloads: {source}; check the device certificate and ward CA given to the simulator")]
    HttpClient {
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The device lost power (fault switch `power-loss-after`).
    #[error("simulated power loss after {bytes} bytes of the image were written to slot {slot}")]
    PowerLoss {
        /// Bytes in the slot file when power went.
        bytes: u64,
        /// The slot being written.
        slot: crate::ota::Slot,
    },
    /// The MQTT session failed.
    #[error("MQTT session: {0}")]
    Session(#[from] crate::SimError),
    /// A message could not be encoded.
    #[error("encoding an update message: {0}")]
    Encode(#[from] serde_json::Error),
}
