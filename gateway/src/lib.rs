//! The Wardgate ward edge gateway.
//!
//! The device-facing edge terminates mutual TLS, takes the device id from the
//! verified certificate, parses every MQTT packet and enforces the topic ACL,
//! payload checks, replay and rate limits before forwarding to the embedded
//! `rumqttd` on loopback. Around it: the device registry, the hash-chained
//! audit log, the admin HTTPS API, the store-and-forward uplink and the OTA
//! agent.
//!
//! Where each control of DESIGN.md lives:
//!
//! | control | module |
//! | --- | --- |
//! | configuration, refusal of insecure settings | [`config`] |
//! | one SQLite database, migrations | [`db`] |
//! | wiring of one running gateway | [`app`], [`context`] |
//! | embedded broker on loopback with a per-boot credential | [`broker`] |
//! | device-facing mutual TLS, MQTT parsing | [`edge`], [`edge::tls`], [`edge::frame`] |
//! | topic ACL, quarantine, payload, replay and rate limits | [`edge::policy`] |
//! | device registry (active / quarantined / revoked) | [`registry`] |
//! | hash-chained audit log | [`audit`] |
//! | device CA, server and device certificates | [`pki`] |
//! | Prometheus metrics | [`metrics`] |
//! | admin HTTPS API, tokens, roles, TOTP, break-glass | [`admin`] |
//! | durable outbox, store-and-forward uplink | [`uplink`] |
//! | upstream renderings (device JSON, FHIR R4) | [`render`] |
//! | hand-off of accepted telemetry from edge to outbox | [`sink`] |
//! | OTA agent: TUF client, image cache | [`ota`] |
//! | command-line subcommands | [`cli`] |

pub mod admin;
pub mod app;
pub mod audit;
pub mod broker;
pub mod cli;
pub mod config;
pub mod context;
pub mod db;
pub mod edge;
pub mod metrics;
pub mod ota;
pub mod pki;
pub mod registry;
pub mod render;
pub mod sink;
pub mod uplink;

pub use app::{Gateway, GatewayError, GatewayHandle};
pub use config::Config;
pub use context::GatewayContext;
