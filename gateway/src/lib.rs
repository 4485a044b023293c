//! The Wardgate ward edge gateway.
//!
//! The device-facing edge terminates mutual TLS, takes the device id from the
//! verified certificate, parses every MQTT packet and enforces the topic ACL,
//! payload checks, replay and rate limits before forwarding to the embedded
//! `rumqttd` on loopback. Around it: the device registry, the hash-chained
//! audit log, the admin HTTPS API, the store-and-forward uplink and the OTA
//! agent.
