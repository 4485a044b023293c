//! The Wardgate wire contract between bedside devices and the ward gateway.
//!
//! Owns topic names (`wardgate/v1/devices/<id>/...`), the message types that
//! travel on them (telemetry, status, OTA offer and report, commands) with
//! their schema version and per-device `seq`, the vital-sign kinds with units
//! and physiological ranges, and the device-side check of a firmware offer
//! (Ed25519 over the manufacturer's signed targets metadata). No I/O.
