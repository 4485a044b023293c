//! [`TufClient`]: the gateway's TUF client for the OTA server.
//!
//! It pins the root of `ota.trusted_root`, keeps its metadata in
//! `<data_dir>/ota/tuf` (tough's datastore inside it, so rollback and freeze
//! protection survive restarts; see [`super::metadata_dir`]), restores its
//! last good state from there at start-up, and refreshes on an interval
//! ([`TufClient::run`]) and on demand ([`TufClient::refresh`],
//! [`TufClient::request_refresh`]). A refused refresh (expired, tampered,
//! rolled back, unreachable, ...) keeps the last good state, returns
//! [`OtaError::Refresh`], writes an `ota.refresh` audit row (outcome
//! `refused`, the reason in its detail) and counts
//! `wardgate_ota_refresh_total{outcome}`; a refusal for a security reason
//! (anything but an unreachable server or local storage) also raises an
//! `update_metadata_refused` alert for the operator, once per episode
//! (again only after a success or a different reason), when the client has
//! an alert store ([`TufClient::with_alerts`]). Rollout code asks
//! [`TufClient::is_fresh`] (or uses [`TufClient::fresh_target`]) before
//! every step, so nothing new starts on expired metadata.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tuf_repo::HttpsTransport;

use super::error::{OtaError, RefreshFailure};
use super::image_cache::create_private_dir;
use super::load::{load_local, load_remote, RepoUrls};
use super::metadata_dir::{version_of, MetadataDir};
use super::metrics::OtaMetrics;
use super::rounds::every_interval_or_wake;
use super::transport::https_transport;
use super::trusted::{RoleStatus, TargetInfo, TrustedMetadata};
use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::config::OtaConfig;

/// The audit action of refreshes.
pub const AUDIT_ACTION: &str = "ota.refresh";

/// What the TUF client reports about itself (admin API, CLI).
#[derive(Debug, Clone, Serialize)]
pub struct TufStatus {
    /// Metadata base URL.
    pub url: String,
    /// Whether verified metadata is loaded.
    pub loaded: bool,
    /// Whether it is still valid now.
    pub fresh: bool,
    /// When the first loaded role expires.
    pub expires: Option<DateTime<Utc>>,
    /// When the loaded set was verified.
    pub verified_at: Option<DateTime<Utc>>,
    /// Versions and expiries of the loaded roles.
    pub roles: Vec<RoleStatus>,
    /// When the last refresh was attempted.
    pub last_attempt: Option<DateTime<Utc>>,
    /// Why the last refresh was refused (`None` if it succeeded).
    pub last_failure: Option<RefreshFailure>,
    /// The last refusal's message.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct LastAttempt {
    at: Option<DateTime<Utc>>,
    failure: Option<RefreshFailure>,
    error: Option<String>,
}

/// The gateway's TUF client. Share it as `Arc<TufClient>`.
#[derive(Debug)]
pub struct TufClient {
    dir: MetadataDir,
    transport: HttpsTransport,
    urls: RepoUrls,
    refresh_interval: Duration,
    state: RwLock<Option<Arc<TrustedMetadata>>>,
    last: Mutex<LastAttempt>,
    refresh_lock: tokio::sync::Mutex<()>,
    wake: Notify,
    audit: AuditLog,
    metrics: OtaMetrics,
    /// Where refusals for a security reason are raised as alerts.
    alerts: Option<crate::anomaly::AlertStore>,
}

/// Puts the configured root in place unless the directory already trusts a
/// newer one (reached through the root chain); a configured root newer than
/// the stored one is the operator re-pinning, and replaces it.
fn pin_root(dir: &MetadataDir, trusted_root: &Path) -> Result<(), OtaError> {
    let configured = std::fs::read(trusted_root)
        .map_err(OtaError::storage("read `ota.trusted_root`", trusted_root))?;
    if !dir.is_initialised() {
        return dir.init(&configured);
    }
    let stored = dir.trusted_root()?;
    let (c, s) = (version_of(&configured), version_of(&stored));
    if c > s {
        tracing::warn!(
            configured = c,
            stored = s,
            "ota.trusted_root is newer than the root this gateway trusts; re-pinning to it"
        );
        dir.init(&configured)?;
    }
    Ok(())
}

impl TufClient {
    /// Sets up the metadata directory in `<data_dir>/ota/tuf`, pins the
    /// root, builds the HTTPS transport and restores the last good state
    /// from disk if it still verifies (no network needed). `metrics` are
    /// the OTA families, registered once per gateway.
    ///
    /// # Errors
    /// [`OtaError::Config`] if `[ota]` is disabled or invalid,
    /// [`OtaError::Tls`] or [`OtaError::Storage`] if its files are unusable.
    pub async fn open(
        config: &OtaConfig,
        data_dir: &Path,
        audit: AuditLog,
        metrics: OtaMetrics,
    ) -> Result<Self, OtaError> {
        if !config.enabled() {
            return Err(crate::config::ConfigError::invalid(
                "ota.server_url",
                "is empty: set it to the OTA server's URL to enable OTA updates",
            )
            .into());
        }
        let urls = RepoUrls::new(&config.metadata_url()?, &config.targets_url()?);
        let transport = https_transport(config)?;
        let ota_dir = data_dir.join("ota");
        let dir = MetadataDir::new(ota_dir.join("tuf"));
        {
            let dir = dir.clone();
            let root = config.trusted_root.clone();
            OtaError::blocking(move || {
                create_private_dir(&ota_dir)?;
                pin_root(&dir, &root)
            })
            .await?;
        }
        let client = Self {
            dir,
            transport,
            urls,
            refresh_interval: config.refresh_interval,
            state: RwLock::new(None),
            last: Mutex::new(LastAttempt::default()),
            refresh_lock: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            audit,
            metrics,
            alerts: None,
        };
        match load_local(&client.dir, &client.urls.targets).await {
            Ok(trusted) => {
                tracing::info!(
                    snapshot_version = trusted.snapshot_version(),
                    expires = %trusted.expires(),
                    "restored the last good TUF metadata from disk"
                );
                client.set_state(Arc::new(trusted));
            }
            Err(OtaError::NoMetadata) => {}
            Err(e) => client.record_failure(&e, "stored").await,
        }
        Ok(client)
    }

    /// Raise `update_metadata_refused` alerts into `alerts` (the gateway's
    /// alert store: the admin API, the console and the upstream alert
    /// topic read it).
    #[must_use]
    pub fn with_alerts(mut self, alerts: crate::anomaly::AlertStore) -> Self {
        self.alerts = Some(alerts);
        self
    }

    fn read_state(&self) -> Option<Arc<TrustedMetadata>> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs `trusted` as the current state; returns the previous one.
    fn set_state(&self, trusted: Arc<TrustedMetadata>) -> Option<Arc<TrustedMetadata>> {
        let expiry = trusted.expires().timestamp();
        let previous = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(trusted);
        self.metrics.metadata_expiry.set(expiry);
        previous
    }

    fn last(&self) -> std::sync::MutexGuard<'_, LastAttempt> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metadata base URL this client refreshes from.
    #[must_use]
    pub fn metadata_url(&self) -> &url::Url {
        &self.urls.metadata
    }

    /// The local metadata directory.
    #[must_use]
    pub fn metadata_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The HTTPS client (ward CA, gateway certificate) the image cache
    /// downloads with.
    #[must_use]
    pub fn http_client(&self) -> reqwest::Client {
        self.transport.client().clone()
    }

    /// Refreshes now: runs the TUF workflow against the OTA server. On
    /// success the new metadata replaces the old; on refusal the last good
    /// state stays, and the refusal is audited and counted.
    ///
    /// # Errors
    /// [`OtaError::Refresh`] (or a storage error) saying why.
    pub async fn refresh(&self) -> Result<Arc<TrustedMetadata>, OtaError> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let result = load_remote(&self.dir, self.transport.clone(), &self.urls).await;
        match result {
            Ok(trusted) => {
                let trusted = Arc::new(trusted);
                // The new state is in place before anyone is told of it.
                let previous = self.set_state(Arc::clone(&trusted));
                self.record_success(&trusted, previous).await;
                Ok(trusted)
            }
            Err(e) => {
                self.record_failure(&e, "remote").await;
                Err(e)
            }
        }
    }

    async fn record_success(
        &self,
        trusted: &TrustedMetadata,
        previous: Option<Arc<TrustedMetadata>>,
    ) {
        self.metrics.refresh.inc("ok");
        let recovered = {
            let mut last = self.last();
            let recovered = last.failure.is_some();
            *last = LastAttempt {
                at: Some(Utc::now()),
                failure: None,
                error: None,
            };
            recovered
        };
        let changed = previous
            .as_ref()
            .is_none_or(|p| p.snapshot_version() != trusted.snapshot_version());
        if !(changed || recovered) {
            tracing::debug!("TUF metadata refreshed, unchanged");
            return;
        }
        tracing::info!(
            snapshot_version = trusted.snapshot_version(),
            expires = %trusted.expires(),
            targets = trusted.target_names().len(),
            "accepted new TUF metadata"
        );
        self.audit_refresh(
            Outcome::Allowed,
            serde_json::json!({
                "snapshot_version": trusted.snapshot_version(),
                "previous_snapshot_version": previous.map(|p| p.snapshot_version()),
                "expires": trusted.expires(),
                "roles": trusted.roles(),
            }),
        )
        .await;
    }

    /// Writes the `ota.refresh` audit row of an accepted or refused
    /// refresh. A row that cannot be written is logged, not returned: the
    /// refresh's outcome stands either way.
    async fn audit_refresh(&self, outcome: Outcome, detail: serde_json::Value) {
        let event = AuditEvent::new(
            "gateway",
            AUDIT_ACTION,
            self.urls.metadata.as_str(),
            outcome,
        )
        .with_detail(detail);
        if let Err(e) = self.audit.append_async(event).await {
            tracing::error!(error = %e, "cannot write the ota.refresh audit row");
        }
    }

    async fn record_failure(&self, e: &OtaError, source: &str) {
        let reason = e.refresh_failure().map_or_else(
            || match e {
                OtaError::Storage { .. } => "storage",
                _ => "other",
            },
            RefreshFailure::label,
        );
        self.metrics.refresh.inc(reason);
        let message = match e {
            OtaError::Refresh { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let failure = e.refresh_failure().unwrap_or(RefreshFailure::Other);
        let previous = {
            let mut last = self.last();
            let previous = last.failure;
            *last = LastAttempt {
                at: Some(Utc::now()),
                failure: Some(failure),
                error: Some(message.clone()),
            };
            previous
        };
        let good = self.read_state();
        let now = Utc::now();
        tracing::warn!(
            reason,
            source,
            fresh = good.as_ref().is_some_and(|g| g.is_fresh(now)),
            "TUF refresh refused: {message}"
        );
        self.audit_refresh(
            Outcome::Refused,
            serde_json::json!({
                "reason": reason,
                "message": message,
                "source": source,
                "kept_snapshot_version": good.as_ref().map(|g| g.snapshot_version()),
                "kept_expires": good.as_ref().map(|g| g.expires()),
                "fresh": good.as_ref().is_some_and(|g| g.is_fresh(now)),
            }),
        )
        .await;
        let security = !matches!(
            failure,
            RefreshFailure::Unreachable | RefreshFailure::Storage | RefreshFailure::Other
        ) && !matches!(e, OtaError::Storage { .. });
        if security && previous != Some(failure) {
            self.raise_alert(reason, &message, good.as_deref(), now)
                .await;
        }
    }

    /// One `update_metadata_refused` alert for this refusal.
    async fn raise_alert(
        &self,
        reason: &str,
        message: &str,
        kept: Option<&TrustedMetadata>,
        now: DateTime<Utc>,
    ) {
        let Some(alerts) = &self.alerts else {
            return;
        };
        let finding = crate::anomaly::Finding {
            at: now,
            device: None,
            subject: format!("ota:{}", self.urls.metadata),
            kind: crate::anomaly::AlertKind::UpdateMetadataRefused,
            score: 1.0,
            evidence: serde_json::json!({
                "reason": reason,
                "message": message,
                "kept_snapshot_version": kept.map(TrustedMetadata::snapshot_version),
                "kept_expires": kept.map(TrustedMetadata::expires),
                "fresh": kept.is_some_and(|k| k.is_fresh(now)),
            }),
        };
        match alerts
            .insert_async(finding, crate::config::ResponseAction::Alert)
            .await
        {
            Ok(alert) => {
                tracing::warn!(
                    alert_id = alert.id,
                    reason,
                    "update metadata refused: alert raised"
                );
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot raise the update_metadata_refused alert");
            }
        }
    }

    /// Asks the refresh loop to refresh now (returns at once).
    pub fn request_refresh(&self) {
        self.wake.notify_one();
    }

    /// Refreshes now and then every `ota.refresh_interval` (or when
    /// [`TufClient::request_refresh`] is called) until `shutdown`.
    /// Refusals are recorded by [`TufClient::refresh`]; the loop goes on.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        every_interval_or_wake(self.refresh_interval, &self.wake, &shutdown, || async {
            let _ = self.refresh().await;
        })
        .await;
        tracing::debug!("TUF refresh loop stopped");
    }

    /// The last good metadata, fresh or not.
    #[must_use]
    pub fn current(&self) -> Option<Arc<TrustedMetadata>> {
        self.read_state()
    }

    /// Whether verified metadata is loaded and still valid at `now`.
    #[must_use]
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        self.read_state().is_some_and(|t| t.is_fresh(now))
    }

    /// When the first loaded role expires.
    #[must_use]
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.read_state().map(|t| t.expires())
    }

    /// Firmware lookup in the last good metadata (fresh or not; use
    /// [`TufClient::fresh_target`] to start a rollout step).
    ///
    /// # Errors
    /// [`OtaError::NoMetadata`] or [`OtaError::Target`].
    pub fn target(&self, name: &str) -> Result<TargetInfo, OtaError> {
        self.read_state().ok_or(OtaError::NoMetadata)?.target(name)
    }

    /// Firmware lookup that refuses when the metadata is not fresh at `now`.
    ///
    /// # Errors
    /// [`OtaError::NotFresh`], [`OtaError::NoMetadata`] or
    /// [`OtaError::Target`].
    pub fn fresh_target(&self, name: &str, now: DateTime<Utc>) -> Result<TargetInfo, OtaError> {
        let trusted = self.read_state().ok_or(OtaError::NoMetadata)?;
        if !trusted.is_fresh(now) {
            return Err(OtaError::NotFresh {
                expired_at: trusted.expires(),
            });
        }
        trusted.target(name)
    }

    /// The client's state for the admin API and CLI.
    #[must_use]
    pub fn status(&self) -> TufStatus {
        let state = self.read_state();
        let last = self.last();
        TufStatus {
            url: self.urls.metadata.to_string(),
            loaded: state.is_some(),
            fresh: state.as_ref().is_some_and(|t| t.is_fresh(Utc::now())),
            expires: state.as_ref().map(|t| t.expires()),
            verified_at: state.as_ref().map(|t| t.verified_at()),
            roles: state.as_ref().map(|t| t.roles()).unwrap_or_default(),
            last_attempt: last.at,
            last_failure: last.failure,
            last_error: last.error.clone(),
        }
    }
}
