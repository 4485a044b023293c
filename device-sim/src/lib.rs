//! Simulated bedside devices for Wardgate.
//!
//! Realistic vitals streams over mutual-TLS MQTT, an OTA client with A/B
//! slots, and load and attack modes. Drives integration tests and benchmarks.
