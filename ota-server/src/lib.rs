//! The Wardgate central OTA server.
//!
//! Serves the TUF repository over HTTPS (consistent snapshots, Range and
//! ETag on targets), takes manufacturer releases and publishes them
//! atomically after checking the delegation signature and path scope, keeps
//! the timestamp fresh with its online key, and runs update campaigns whose
//! state lives in SQLite. Manufacturer keys never reach this server.
//!
//! Components, and where DESIGN.md's controls live:
//!
//! - [`config`]: one TOML file, `WARDGATE_OTA_*` overrides, refusal of
//!   invalid or insecure settings by field name.
//! - [`server`]: start-up wiring and the HTTPS accept loop (rustls, mutual
//!   TLS optional per connection, header limits and timeouts,
//!   [`tokio_util::sync::CancellationToken`] shutdown); [`tls`] builds the
//!   rustls configuration.
//! - [`http`]: routes, JSON errors with stable codes, authentication
//!   extractors ([`auth`]: hashed tokens for admins and manufacturers,
//!   ward-CA client certificates for gateways).
//! - [`repo`]: the TUF repository on disk and in memory, atomic publication
//!   by generation swap, snapshot/timestamp re-signing with the two online
//!   keys ([`repo::OnlineKeys`]). Authoring and the release rules
//!   (delegation signature, path scope, length, SHA-256, newer version) are
//!   `tuf-repo`'s, shared with manufacturers; [`repo::release`] adds the
//!   upload-route checks and maps refusals to stable API codes.
//! - [`refresher`]: re-signs the timestamp well before it expires, so
//!   gateways detect freeze attacks.
//! - [`campaign`]: waves, failure threshold, maintenance window, gateway
//!   assignments and results; [`db`]: SQLite (WAL, `user_version`
//!   migrations) on a dedicated thread.
//! - [`names`]: parse-don't-validate types for every name from the network.
//! - [`metrics`]: Prometheus `wardgate_ota_*` metrics.
//! - [`cli`]: the binary's subcommands (`serve`, `init`, `export`, `token`).

pub mod auth;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod metrics;
pub mod names;
pub mod refresher;
pub mod repo;
pub mod server;
pub mod tls;

pub use error::Error;
