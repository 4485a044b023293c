//! The device-facing edge: mutual TLS, MQTT parsing and per-packet policy in
//! front of the embedded broker.
