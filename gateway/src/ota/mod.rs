//! The gateway's OTA agent (data flow 2 of docs/architecture.md).
//!
//! | part | module |
//! | --- | --- |
//! | per-device update state machine, in SQLite | [`device_state`] |
pub mod device_state;
