//! The gateway's OTA agent (data flow 2 of docs/architecture.md).
//!
//! | part | module |
//! | --- | --- |
//! | per-device update state machine, in SQLite | [`device_state`] |
//! | offers out, status and reports in (broker local link) | [`offers`] |
//! | HTTPS image server for devices (mutual TLS, Range, ETag) | [`image_server`] |
//! | rollout settings (`[ota]` fields) | [`rollout_config`] |
//! | `wardgate_ota_*` rollout metrics | [`rollout_metrics`] |

pub mod device_state;
pub mod image_server;
pub mod offers;
pub mod rollout_config;
pub mod rollout_metrics;
