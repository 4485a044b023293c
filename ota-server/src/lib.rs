//! The Wardgate central OTA server.
//!
//! Serves the TUF repository over HTTPS (consistent snapshots, Range and
//! ETag on targets), takes manufacturer releases and publishes them
//! atomically after checking the delegation signature and path scope, keeps
//! the timestamp fresh with its online key, and runs update campaigns whose
//! state lives in SQLite. Manufacturer keys never reach this server.
//!
//! Components, and where the controls of `docs/architecture.md` live:
//!
//! - [`config`]: one TOML file, `WARDGATE_OTA_*` overrides, refusal of
//!   invalid or insecure settings by field name.
//! - [`server`]: start-up wiring and the HTTPS accept loop (rustls, mutual
//!   TLS optional per connection, header limits and timeouts,
//!   [`tokio_util::sync::CancellationToken`] shutdown); [`tls`] builds the
//!   rustls configuration.
//! - [`peer_limit`]: requests per client address (`limits.requests_per_peer_per_second`,
//!   `limits.request_burst_per_peer`), `429` with `Retry-After` before any
//!   other work, counted but never audited.
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
//! - Names from the network are parsed once into the workspace's shared
//!   types: [`wardgate_protocol::DeviceId`] and [`wardgate_protocol::GatewayId`]
//!   (one charset rule with the gateway), [`tuf_repo::ManufacturerName`] and
//!   [`tuf_repo::TargetPath`] (the rule every upload and `tough` agree on);
//!   [`repo::TargetRequest`] resolves a `targets/` URL to one of them.
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
pub mod peer_limit;
pub mod refresher;
pub mod repo;
pub mod server;
pub mod tls;

pub use error::Error;
