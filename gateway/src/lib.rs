//! The Wardgate ward edge gateway.
//!
//! The device-facing edge terminates mutual TLS, takes the device id from the
//! verified certificate, parses every MQTT packet and enforces the topic ACL,
//! payload checks, replay and rate limits before forwarding to the embedded
//! `rumqttd` on loopback. Around it: the device registry, the hash-chained
//! audit log, the admin HTTPS API, the store-and-forward uplink and the OTA
//! agent.
//!
//! The architecture (crates, trust model, data flows, the MQTT contract,
//! persistence) is described in `docs/architecture.md` of the repository;
//! the admin API and its access control in `docs/admin.md`.
//!
//! Where each control lives:
//!
//! | control | module |
//! | --- | --- |
//! | configuration sections and defaults (a leaf module) | [`config::sections`] |
//! | `WARDGATE_*` overrides, refusal of insecure settings, [`ValidConfig`] | [`config`], [`config::validate`] |
//! | one SQLite database, migrations | [`db`] |
//! | wiring of one running gateway, one error per component | [`app`], [`context`] |
//! | embedded broker with no listener, in-process connections only | [`broker`] |
//! | device-facing mutual TLS, MQTT parsing | [`edge`], [`edge::tls`], [`edge::frame`] |
//! | CONNECT admission: client id, enrolment, pinned certificate, no last will | [`edge::admission`] |
//! | topic ACL and quarantine, payload, replay and rate limits | [`edge::acl`], [`edge::payload`], [`edge::replay`], [`edge::rate_limit`] (joined in [`edge::policy`]); cool-off after a flood: [`edge::cooloff`] |
//! | device registry (active / quarantined / revoked) | [`registry`] |
//! | hash-chained audit log | [`audit`] |
//! | device CA, server and device certificates | [`pki`] |
//! | Prometheus metrics | [`metrics`] |
//! | access control: tokens (hashes, expiry), roles and the route-to-role table | [`access`], [`access::token`], [`access::policy`] |
//! | TOTP second factor, replay refusal and lockout, sealed TOTP secrets | [`access::totp`] |
//! | break-glass tokens, access review | [`access::break_glass`], [`access::review`] |
//! | admin HTTPS API: server, routes, guard, JSON errors, metrics | [`admin`] |
//! | ward console: embedded web page, live readings per device | [`console`] |
//! | durable outbox, store-and-forward uplink | [`uplink`] |
//! | upstream renderings (device JSON, FHIR R4) | [`render`] |
//! | hand-off of accepted telemetry from edge to outbox | [`sink`] |
//! | OTA agent: TUF client, image cache | [`ota`] |
//! | behavioural anomaly detection, alerts, quarantine response | [`anomaly`] |
//! | command-line subcommands | [`cli`] |

pub mod access;
pub mod admin;
pub mod anchoring;
pub mod anomaly;
pub mod app;
pub mod audit;
pub mod broker;
pub mod cli;
pub mod config;
pub mod console;
pub mod context;
pub mod db;
pub mod edge;
pub mod metrics;
pub mod open_files;
pub mod ota;
pub mod pki;
pub mod registry;
pub mod render;
pub mod sink;
pub mod stored_seq;
#[cfg(test)]
mod testing;
pub mod token_bucket;
pub mod uplink;

pub use app::{Gateway, GatewayError, GatewayHandle};
pub use config::{Config, ValidConfig};
pub use context::GatewayContext;
