//! The gateway's OTA agent: the TUF client for the OTA server and the
//! ward's image cache (data flow 2 of the architecture: refresh with tough,
//! verify, cache the image once).
//!
//! | part | module |
//! | --- | --- |
//! | `[ota]` settings | [`config`] ([`OtaConfig`]) |
//! | TUF client: pinned root, refresh on interval and on demand, last good state, audit and metric on refusal, freshness | [`tuf_client`] ([`TufClient`]) |
//! | the TUF workflow over a metadata directory (shared with `gateway ota tuf-client`) | [`load`], [`metadata_dir`] |
//! | verified metadata: roles, expiry, target lookup with the manufacturer's signed metadata | [`trusted`] ([`TrustedMetadata`], [`TargetInfo`]) |
//! | transports: HTTPS with the ward CA and client certificate, exact-bytes recording, offline restore | [`transport`] |
//! | resumable, verified image download (HTTP Range) | [`download`] |
//! | one image per ward, content-addressed | [`image_cache`] ([`ImageCache`]) |
//! | `wardgate_ota_*` metrics | [`metrics`] ([`OtaMetrics`]) |
//! | errors and refusal classes | [`error`] ([`OtaError`], [`RefreshFailure`]) |
//!
//! Wiring in a running gateway: register [`OtaMetrics`] once, open the
//! [`TufClient`] with `[ota]`, the data dir and the audit log, spawn
//! [`TufClient::run`] with the shutdown token, and open the [`ImageCache`]
//! with [`TufClient::http_client`].

pub mod config;
pub mod download;
pub mod error;
pub mod image_cache;
pub mod load;
pub mod metadata_dir;
pub mod metrics;
pub mod transport;
pub mod trusted;
pub mod tuf_client;

pub use config::OtaConfig;
pub use error::{OtaError, RefreshFailure};
pub use image_cache::{CacheSettings, CachedImage, Fetch, ImageCache, ImageDigest};
pub use metrics::OtaMetrics;
pub use trusted::{RoleStatus, TargetEntry, TargetInfo, TrustedMetadata};
pub use tuf_client::{TufClient, TufStatus};
