//! Helpers for the crate's unit tests (compiled only for them).

use wardgate_protocol::DeviceId;

/// A device id the test knows to be valid.
pub fn id(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}
