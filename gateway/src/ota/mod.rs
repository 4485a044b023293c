//! The gateway's OTA agent: the TUF client for the OTA server and the
//! ward's image cache (data flow 2 of the architecture: refresh with tough,
//! verify, cache the image once).
//!
//! | part | module |
//! | --- | --- |
//! | `[ota]` settings | [`crate::config::ota`] ([`OtaConfig`]) |
//! | TUF client: pinned root, refresh on interval and on demand, last good state, audit and metric on refusal, freshness | [`tuf_client`] ([`TufClient`]) |
//! | the TUF workflow over a metadata directory (shared with `gateway ota tuf-client`) | [`load`], [`metadata_dir`] |
//! | verified metadata: roles, expiry, target lookup with the manufacturer's signed metadata | [`trusted`] ([`TrustedMetadata`], [`TargetInfo`]) |
//! | transports: HTTPS with the ward CA and client certificate, exact-bytes recording, offline restore | [`transport`] |
//! | resumable, verified image download (HTTP Range) | [`download`] |
//! | one image per ward, content-addressed | [`image_cache`] ([`ImageCache`]) |
//! | `wardgate_ota_*` metrics | [`metrics`] ([`OtaMetrics`]) |
//! | campaign execution: inventory, assignments, offers, results, timeouts | [`agent`] ([`Rollout`]) |
//! | the inventory reported to the OTA server | [`inventory`] |
//! | client of the OTA server's gateway API (assignments, results) | [`server_api`] ([`ServerApi`]) |
//! | per-device update state machine, in SQLite | [`device_state`] ([`DeviceStates`]) |
//! | offers out, status and reports in (the embedded broker's local link) | [`offers`] |
//! | HTTPS image server for devices (mutual TLS, Range, ETag, bounded) | [`image_server`] |
//! | progress for the admin API and CLI, operator retry | [`api`] |
//! | rollout settings (`[ota]` fields) | [`crate::config::ota_rollout`] ([`OtaRolloutConfig`]) |
//! | `wardgate_ota_*` rollout metrics | [`rollout_metrics`] ([`RolloutMetrics`]) |
//! | errors and refusal classes | [`error`] ([`OtaError`], [`RefreshFailure`]) |
//! | the agent of a running gateway, started from `[ota]` | [`service`] ([`OtaService`]) |
//! | the schedule of the background loops (interval, wake-up, shutdown) | `rounds` |
//!
//! Wiring in a running gateway ([`OtaService::start`], called by
//! [`crate::Gateway::start`] when the file has an `[ota]` section): register
//! [`OtaMetrics`] once, open the [`TufClient`] with `[ota]`, the data dir and
//! the audit log, spawn [`TufClient::run`] with the shutdown token, open the
//! [`ImageCache`] with [`TufClient::http_client`], and start the
//! [`Rollout`].

pub mod agent;
pub mod api;
pub mod device_state;
pub mod download;
pub mod error;
pub mod image_cache;
pub mod image_server;
pub mod inventory;
pub mod load;
pub mod metadata_dir;
pub mod metrics;
pub mod offers;
pub mod rollout_metrics;
mod rounds;
pub mod server_api;
pub mod service;
pub mod transport;
pub mod trusted;
pub mod tuf_client;

pub use crate::config::OtaConfig;
pub use crate::config::OtaRolloutConfig;
pub use agent::Rollout;
pub use device_state::DeviceStates;
pub use error::{OtaError, RefreshFailure};
pub use image_cache::{CacheSettings, CachedImage, Fetch, ImageCache, ImageDigest};
pub use metrics::OtaMetrics;
pub use rollout_metrics::RolloutMetrics;
pub use server_api::ServerApi;
pub use service::{OtaService, OtaStartError};
pub use trusted::{RoleStatus, TargetEntry, TargetInfo, TrustedMetadata};
pub use tuf_client::{TufClient, TufStatus};
