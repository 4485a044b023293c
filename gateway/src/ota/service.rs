//! [`OtaService`]: the OTA agent of a running gateway, started from its
//! `[ota]` section by [`crate::Gateway::start`].
//!
//! The parts are started in the order they depend on each other: the
//! `wardgate_ota_*` metrics, the [`TufClient`] with the pinned root (its
//! refresh loop runs at once and then every `ota.refresh_interval`, so a
//! gateway that starts while the OTA server is unreachable still starts and
//! keeps its last good metadata), the ward's [`ImageCache`] over the TUF
//! client's HTTPS client, and the [`Rollout`] with its image server for
//! devices. Every task takes the gateway's shutdown token and is tracked by
//! its task tracker, so [`crate::GatewayHandle::shutdown`] stops them all.

use std::sync::Arc;

use crate::broker::BrokerHandle;
use crate::config::OtaSection;
use crate::context::GatewayContext;
use crate::ota::agent::{RolloutError, RolloutHandle};
use crate::ota::{CacheSettings, ImageCache, OtaError, OtaMetrics, Rollout, TufClient};

/// Which part of the OTA agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtaStartError {
    /// The TUF client (pinned root, metadata directory, TLS files).
    #[error("OTA TUF client failed to start; check ota.trusted_root, ota.ca_cert, ota.client_cert and ota.client_key")]
    Tuf(#[source] OtaError),
    /// The image cache in the data directory.
    #[error("OTA image cache failed to start; check storage.data_dir (its ota/images folder)")]
    Images(#[source] OtaError),
    /// Campaign execution or the image server for devices.
    #[error("OTA rollout failed to start; check ota.image_listen and the edge's TLS files")]
    Rollout(#[source] RolloutError),
    /// The alert store that refused update metadata is raised in.
    #[error(
        "OTA agent cannot open the alert store in the gateway database; check storage.data_dir"
    )]
    Alerts(#[source] crate::anomaly::StoreError),
}

/// The running OTA agent.
#[derive(Debug, Clone)]
pub struct OtaService {
    /// The TUF client (verified metadata, refresh on demand).
    pub tuf: Arc<TufClient>,
    /// The ward's image cache.
    pub images: Arc<ImageCache>,
    /// Campaign execution: progress, operator retry, the image server's
    /// address.
    pub rollout: RolloutHandle,
}

impl OtaService {
    /// Start the OTA agent of `ctx` from `section`.
    ///
    /// # Errors
    /// [`OtaStartError`] naming the part that could not start, with its
    /// cause as the source.
    pub async fn start(
        ctx: &Arc<GatewayContext>,
        broker: &BrokerHandle,
        section: &OtaSection,
    ) -> Result<Self, OtaStartError> {
        let metrics = OtaMetrics::register(&ctx.metrics);
        let tuf = Arc::new(
            TufClient::open(
                &section.server,
                &ctx.data_dir,
                ctx.audit.clone(),
                metrics.clone(),
            )
            .await
            .map_err(OtaStartError::Tuf)?
            .with_alerts(
                crate::anomaly::AlertStore::open(&ctx.db_path).map_err(OtaStartError::Alerts)?,
            ),
        );
        ctx.tasks.spawn(Arc::clone(&tuf).run(ctx.shutdown.clone()));
        let images = Arc::new(
            ImageCache::open(
                &ctx.data_dir,
                tuf.http_client(),
                CacheSettings::from(&section.server),
                ctx.audit.clone(),
                metrics,
            )
            .await
            .map_err(OtaStartError::Images)?,
        );
        let rollout = Rollout::start_in(
            ctx,
            broker,
            &section.server,
            section.rollout.clone(),
            Arc::clone(&tuf),
            Arc::clone(&images),
        )
        .await
        .map_err(OtaStartError::Rollout)?;
        tracing::info!(
            server = %section.server.server_url,
            image_server = %rollout.image_addr,
            "OTA agent started"
        );
        Ok(Self {
            tuf,
            images,
            rollout,
        })
    }
}
