//! The one error type of the protocol crate.

/// Why a piece of device or gateway input was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// A device id broke the charset or length rules.
    #[error("invalid device id {input:?}: {reason}; ids are 1-64 characters of A-Z a-z 0-9 '-' '_' starting with a letter or digit")]
    DeviceId {
        /// The refused input (truncated to 80 characters).
        input: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A gateway id broke the charset or length rules.
    #[error("invalid gateway id {input:?}: {reason}; ids are 1-64 characters of A-Z a-z 0-9 '-' '_' starting with a letter or digit")]
    GatewayId {
        /// The refused input (truncated to 80 characters).
        input: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A topic is not one of the device topics of the v1 contract.
    #[error("topic {topic:?} is not a wardgate/v1 device topic: {reason}")]
    Topic {
        /// The refused topic (truncated to 200 characters).
        topic: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A payload is not valid JSON for its message type.
    #[error("malformed {message} payload: {detail}")]
    Malformed {
        /// Which message type was expected.
        message: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
    /// The payload declared a schema version this build does not speak.
    #[error("unsupported {message} schema version {found}; this build speaks version {expected}")]
    Schema {
        /// Which message type.
        message: &'static str,
        /// Version in the payload.
        found: u32,
        /// Version this build speaks.
        expected: u32,
    },
    /// A vital-sign value is outside its physiological range or not finite.
    #[error("{kind} value {value} outside the physiological range {min}..={max} {unit}")]
    OutOfRange {
        /// The vital kind (snake_case name).
        kind: &'static str,
        /// The refused value.
        value: f64,
        /// Lowest plausible value.
        min: f64,
        /// Highest plausible value.
        max: f64,
        /// UCUM unit.
        unit: &'static str,
    },
    /// A firmware offer failed the device-side check.
    #[error("firmware offer refused: {reason}")]
    Offer {
        /// The first check that failed.
        reason: String,
    },
    /// A message field broke a structural rule (empty list, too long text ...).
    #[error("invalid {message}: {detail}")]
    Invalid {
        /// Which message type.
        message: &'static str,
        /// What is wrong.
        detail: String,
    },
}

pub(crate) fn truncate(input: &str, max: usize) -> String {
    input.chars().take(max).collect()
}
