//! The rollout: campaign execution on the ward.
//!
//! The OTA server decides; the gateway executes and keeps each device's
//! state in its own database ([`DeviceStates`]), so a restart resumes where
//! it was. Three tasks:
//!
//! - **sync** (every `ota.assignments_interval`, and at once when a device
//!   finishes or [`RolloutHandle::sync_now`] is called): report the
//!   inventory ([`inventory`]), take the server's assignments
//!   ([`ServerApi::assignments`]), and for each campaign check its target
//!   against the verified TUF metadata (the server is not trusted for the
//!   image: its SHA-256 and length must equal the manufacturer's signed
//!   ones), make sure the image is in the ward's cache (downloaded once,
//!   however many devices), record the devices of the current wave, drive
//!   those already seen idle, and report every finished device's outcome
//!   ([`ServerApi::results`]). Campaigns the server no longer hands out
//!   (paused, halted, completed) start nothing new; devices already
//!   updating finish and their outcomes wait until the server takes them.
//! - **events**: device status and update reports from the broker
//!   ([`offers`]), download progress from the image server, and a clock
//!   tick for the timeouts, each applied to the state machine
//!   ([`next_step`](crate::ota::device_state::next_step)), with an offer
//!   sent when it says so.
//! - the offer link's reader and the image server's listener.
//!
//! No new rollout step starts unless the campaign is active and outside no
//! maintenance window, the TUF metadata is fresh, the target verifies and
//! its image is cached: checked again at every offer.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use semver::Version;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use url::Url;
use wardgate_protocol::{DeviceId, OtaOffer, OtaOutcome, SCHEMA_VERSION};

use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::broker::BrokerHandle;
use crate::config::ota_rollout::{OtaRolloutConfig, RolloutConfigError};
use crate::config::OtaConfig;
use crate::context::GatewayContext;
use crate::ota::device_state::{
    AssignedCampaign, DeviceStateError, DeviceStates, DeviceUpdate, Input, SeenStatus, StepContext,
    Timeouts, UpdateState,
};
use crate::ota::image_cache::ImageCache;
use crate::ota::image_server::{
    self, ImageProgress, ImageServerDeps, ImageServerError, ImageServerSettings, ImageSource,
    PROGRESS_QUEUE,
};
use crate::ota::offers::{self, DeviceEvent, OfferSender, OffersError};
use crate::ota::rollout_metrics::RolloutMetrics;
use crate::ota::rounds::every_interval_or_wake;
use crate::ota::server_api::{Assignment, DeviceResult, ServerApi, ServerApiError};
use crate::ota::tuf_client::TufClient;
use crate::ota::{inventory, OtaError, TargetInfo};
use crate::registry::{DeviceState, Registry};

/// What went wrong starting the rollout.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] RolloutConfigError),
    /// The image server's TLS files are unusable.
    #[error("OTA image server TLS: {0}")]
    Tls(#[from] wardgate_tls::TlsError),
    /// The rollout state could not be opened.
    #[error(transparent)]
    State(#[from] DeviceStateError),
    /// The broker link failed.
    #[error(transparent)]
    Offers(#[from] OffersError),
    /// The registry could not be read.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// A blocking task failed.
    #[error("OTA rollout task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The image server did not start.
    #[error(transparent)]
    ImageServer(#[from] ImageServerError),
    /// The OTA server's URL is unusable.
    #[error(transparent)]
    Server(#[from] ServerApiError),
    /// `ota.server_url` is invalid.
    #[error(transparent)]
    OtaConfig(#[from] crate::config::ConfigError),
    /// `ota.image_url` (or the bound address) is not a URL.
    #[error("invalid setting ota.image_url: {source}; give an https:// URL such as \"https://gw-3a.ward.local:8444\"")]
    ImageUrl {
        /// The parser's error.
        #[source]
        source: url::ParseError,
    },
}

/// The image cache serves the image server.
impl ImageSource for ImageCache {
    fn image_path(&self, sha256: &str) -> Option<std::path::PathBuf> {
        self.path_for(sha256)
    }
}

/// What the rollout is built from.
pub struct RolloutParts {
    /// The settings.
    pub config: OtaRolloutConfig,
    /// The verified TUF metadata.
    pub tuf: Arc<TufClient>,
    /// The ward's image cache.
    pub images: Arc<ImageCache>,
    /// The OTA server's gateway API.
    pub server: ServerApi,
    /// The image server's TLS configuration (client certificates of the
    /// ward device CA required).
    pub image_tls: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for RolloutParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutParts").finish_non_exhaustive()
    }
}

/// A campaign as the gateway can act on it right now.
#[derive(Debug, Clone)]
struct CampaignPlan {
    /// The target's version, once it was verified (now or before a
    /// restart). Without it nothing about the campaign's devices is decided.
    version: Option<Version>,
    /// The verified target, when every check passed.
    target: Option<TargetInfo>,
    /// A new step may start (active, in window, verified, cached).
    open: bool,
}

struct Inner {
    states: DeviceStates,
    offers: OfferSender,
    tuf: Arc<TufClient>,
    images: Arc<ImageCache>,
    server: ServerApi,
    registry: Registry,
    audit: AuditLog,
    metrics: RolloutMetrics,
    timeouts: Timeouts,
    image_url: Url,
    started_at: DateTime<Utc>,
    wake: Notify,
    plans: Mutex<HashMap<String, CampaignPlan>>,
    /// Campaigns whose results the server refused because of the
    /// campaign's state: not posted again until it is assigned again.
    results_blocked: Mutex<HashSet<String>>,
    /// The kind of the last problem talking to the server (audited once
    /// per change).
    server_problem: Mutex<Option<String>>,
}

/// A running rollout.
#[derive(Clone)]
pub struct RolloutHandle {
    inner: Arc<Inner>,
    /// Where the image server listens.
    pub image_addr: SocketAddr,
}

impl std::fmt::Debug for RolloutHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutHandle")
            .field("image_addr", &self.image_addr)
            .finish_non_exhaustive()
    }
}

impl RolloutHandle {
    /// Report the inventory and take assignments now (returns at once).
    pub fn sync_now(&self) {
        self.inner.wake.notify_one();
    }

    /// The rollout's database handle.
    #[must_use]
    pub fn states(&self) -> &DeviceStates {
        &self.inner.states
    }

    /// The rollout's metrics.
    #[must_use]
    pub fn metrics(&self) -> &RolloutMetrics {
        &self.inner.metrics
    }

    /// The base URL in offers (`<image_url>/images/<sha256>`).
    #[must_use]
    pub fn image_url(&self) -> &Url {
        &self.inner.image_url
    }

    /// An operator's retry of a failed or rolled-back device (audited);
    /// the device is offered again once seen idle.
    ///
    /// # Errors
    /// As [`crate::ota::api::retry`].
    pub async fn retry(
        &self,
        device: DeviceId,
        actor: String,
    ) -> Result<DeviceUpdate, crate::ota::api::RetryError> {
        let states = self.inner.states.clone();
        let row = states
            .run(move |s| Ok(crate::ota::api::retry(s, &device, &actor, Utc::now())))
            .await
            .map_err(crate::ota::api::RetryError::State)??;
        self.inner.metrics.states.inc(row.state.as_str());
        self.sync_now();
        Ok(row)
    }
}

/// Everything the rollout needs of the gateway.
#[derive(Debug)]
pub struct Rollout;

impl Rollout {
    /// Start the rollout of a running gateway from its `[ota]` settings:
    /// the OTA server API over the TUF client's HTTPS client, the image
    /// server with the edge's TLS files (`edge.server_cert`,
    /// `edge.server_key`, client certificates of `edge.ca_cert` required).
    ///
    /// # Errors
    /// [`RolloutError`] naming what could not start.
    pub async fn start_in(
        ctx: &Arc<GatewayContext>,
        broker: &BrokerHandle,
        ota: &OtaConfig,
        config: OtaRolloutConfig,
        tuf: Arc<TufClient>,
        images: Arc<ImageCache>,
    ) -> Result<RolloutHandle, RolloutError> {
        let edge = &ctx.config.edge;
        let image_tls = wardgate_tls::ServerTls::new(wardgate_tls::Credentials::load(
            "edge.server_cert",
            &edge.server_cert,
            "edge.server_key",
            &edge.server_key,
        )?)
        .client_auth(wardgate_tls::ClientAuth::Required(
            wardgate_tls::TrustAnchors::load("edge.ca_cert", &edge.ca_cert)?,
        ))
        .alpn(&[b"http/1.1"])
        .build()?;
        let server = ServerApi::new(tuf.http_client(), &ota.base_url()?)?;
        Self::start(
            ctx,
            broker,
            RolloutParts {
                config,
                tuf,
                images,
                server,
                image_tls: Arc::new(image_tls),
            },
        )
        .await
    }

    /// Start the rollout from its parts.
    ///
    /// # Errors
    /// [`RolloutError`] naming what could not start.
    pub async fn start(
        ctx: &Arc<GatewayContext>,
        broker: &BrokerHandle,
        parts: RolloutParts,
    ) -> Result<RolloutHandle, RolloutError> {
        parts.config.validate()?;
        let listen = parts
            .config
            .image_listen
            .ok_or_else(|| RolloutConfigError {
                field: "image_listen",
                reason: "required".into(),
            })?;
        let metrics = RolloutMetrics::register(&ctx.metrics);
        let states = {
            let path = ctx.db_path.clone();
            tokio::task::spawn_blocking(move || DeviceStates::open(&path))
                .await
                .map_err(|e| DeviceStateError::Join(e.to_string()))??
        };
        let (offer_tx, events, reader) =
            offers::open(broker, metrics.clone(), ctx.shutdown.clone())?;
        ctx.tasks.spawn(reader);
        let (progress_tx, progress_rx) = mpsc::channel(PROGRESS_QUEUE);
        let image = image_server::start(
            &ImageServerSettings {
                listen,
                max_downloads: parts.config.image_max_downloads,
                max_connections: parts.config.image_max_connections,
                retry_after: parts.config.image_retry_after,
                handshake_timeout: parts.config.image_handshake_timeout,
            },
            parts.image_tls,
            ImageServerDeps {
                images: Arc::clone(&parts.images) as Arc<dyn ImageSource>,
                registry: ctx.registry.clone(),
                states: states.clone(),
                audit: ctx.audit.clone(),
                metrics: metrics.clone(),
                progress: progress_tx,
            },
            ctx.shutdown.clone(),
            &ctx.tasks,
        )
        .await?;
        let image_url = match &parts.config.image_url {
            Some(u) => Url::parse(u).map_err(|source| RolloutError::ImageUrl { source })?,
            None => Url::parse(&format!("https://{}/", image.addr))
                .map_err(|source| RolloutError::ImageUrl { source })?,
        };
        let inner = Arc::new(Inner {
            states,
            offers: offer_tx,
            tuf: parts.tuf,
            images: parts.images,
            server: parts.server,
            registry: ctx.registry.clone(),
            audit: ctx.audit.clone(),
            metrics,
            timeouts: parts.config.timeouts(),
            image_url,
            started_at: Utc::now(),
            wake: Notify::new(),
            plans: Mutex::new(HashMap::new()),
            results_blocked: Mutex::new(HashSet::new()),
            server_problem: Mutex::new(None),
        });
        ctx.tasks.spawn(sync_loop(
            Arc::clone(&inner),
            parts.config.assignments_interval,
            ctx.shutdown.clone(),
        ));
        ctx.tasks.spawn(event_loop(
            Arc::clone(&inner),
            events,
            progress_rx,
            parts.config.tick_interval,
            ctx.shutdown.clone(),
        ));
        tracing::info!(image_server = %image.addr, image_url = %inner.image_url, "OTA rollout started");
        Ok(RolloutHandle {
            inner,
            image_addr: image.addr,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn sync_loop(inner: Arc<Inner>, interval: std::time::Duration, shutdown: CancellationToken) {
    every_interval_or_wake(interval, &inner.wake, &shutdown, || async {
        if let Err(e) = inner.sync_round().await {
            tracing::error!(error = %e, "OTA rollout round failed; retrying next round");
        }
    })
    .await;
    tracing::debug!("OTA rollout sync loop stopped");
}

async fn event_loop(
    inner: Arc<Inner>,
    mut events: mpsc::Receiver<DeviceEvent>,
    mut progress: mpsc::Receiver<ImageProgress>,
    tick: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let r = tokio::select! {
            () = shutdown.cancelled() => break,
            e = events.recv() => match e {
                Some(e) => inner.on_device_event(e).await,
                None => break,
            },
            p = progress.recv() => match p {
                Some(p) => inner.on_progress(p).await,
                None => Ok(()),
            },
            _ = ticker.tick() => inner.on_tick().await,
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "OTA rollout could not record a device event");
        }
    }
    tracing::debug!("OTA rollout event loop stopped");
}

impl Inner {
    async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.audit.append_async(event).await {
            tracing::error!(error = %e, "cannot write an OTA rollout audit row");
        }
    }

    fn plan(&self, campaign: &str) -> Option<CampaignPlan> {
        lock(&self.plans).get(campaign).cloned()
    }

    /// The plan of a campaign, from memory or (after a restart, before the
    /// first round) from the database: enough to take reports, not to offer.
    async fn plan_or_stored(
        &self,
        campaign: &str,
    ) -> Result<Option<CampaignPlan>, DeviceStateError> {
        if let Some(p) = self.plan(campaign) {
            return Ok(Some(p));
        }
        let id = campaign.to_owned();
        let rec = self.states.run(move |s| s.campaign(&id)).await?;
        Ok(rec.and_then(|r| {
            Some(CampaignPlan {
                version: Some(Version::parse(r.version.as_deref()?).ok()?),
                target: None,
                open: false,
            })
        }))
    }

    fn live_status(&self, s: Option<SeenStatus>) -> Option<SeenStatus> {
        s.filter(|s| s.seen_at >= self.started_at)
    }

    /// Apply `input` to one device's row and carry out what follows: count
    /// the new state, send the offer, wake the sync loop when it is done.
    async fn drive(
        &self,
        campaign: &str,
        plan: &CampaignPlan,
        device: &DeviceId,
        input: Input,
        status: Option<SeenStatus>,
    ) -> Result<(), DeviceStateError> {
        let Some(version) = plan.version.clone() else {
            // Never verified: every device waits where it is.
            return Ok(());
        };
        let now = Utc::now();
        let open = plan.open && self.tuf.is_fresh(now);
        let device_failed = matches!(
            input,
            Input::Report {
                outcome: OtaOutcome::Failed,
                ..
            }
        );
        let (c, d, timeouts) = (campaign.to_owned(), device.clone(), self.timeouts);
        let applied = self
            .states
            .run(move |s| {
                let ctx = StepContext {
                    now,
                    target_version: &version,
                    may_offer: open,
                    status: status.as_ref(),
                    timeouts: &timeouts,
                };
                s.apply(&c, &d, &input, &ctx)
            })
            .await?;
        let Some(applied) = applied else {
            return Ok(());
        };
        if applied.changed() {
            self.metrics.states.inc(applied.row.state.as_str());
        }
        if device_failed && applied.changed() && applied.from.holds_offer() {
            self.recheck_image(campaign, plan, device, &applied.row.detail)
                .await?;
        }
        if applied.offer {
            let again = applied.from.holds_offer();
            match &plan.target {
                Some(target) => self.send_offer(campaign, device, target, again).await,
                None => {
                    tracing::error!(campaign_id = campaign, device_id = %device, "offer decided without a verified target; not sent");
                }
            }
        }
        if applied.row.state.is_terminal() && applied.changed() {
            if applied.row.state == UpdateState::Healthy {
                if let Some(v) = &plan.version {
                    self.record_firmware(device, v).await;
                }
            }
            self.wake.notify_one();
        }
        Ok(())
    }

    /// A device that held an offer reported a failure (its download or the
    /// length and SHA-256 check of what it downloaded may have failed):
    /// hash the ward's cached copy again, in the background. A copy that no
    /// longer matches was tampered with or damaged on the gateway's disk:
    /// [`ImageCache::verify_because`] deletes it, audits it
    /// (`ota.image.verify`, refused, naming this device) and counts it, and
    /// the next round downloads it again from the OTA server, so no other
    /// device is served the bad copy.
    async fn recheck_image(
        &self,
        campaign: &str,
        plan: &CampaignPlan,
        device: &DeviceId,
        detail: &str,
    ) -> Result<(), DeviceStateError> {
        let sha = match &plan.target {
            Some(t) => Some(t.sha256.clone()),
            None => {
                let id = campaign.to_owned();
                self.states
                    .run(move |s| s.campaign(&id))
                    .await?
                    .map(|c| c.sha256)
            }
        };
        let Some(sha) = sha else {
            return Ok(());
        };
        let images = Arc::clone(&self.images);
        let trigger = format!(
            "device {device} reported a failure in campaign {campaign}: {}",
            detail.chars().take(300).collect::<String>()
        );
        let device = device.clone();
        tokio::spawn(async move {
            match images.verify_because(&sha, &trigger).await {
                Ok(_) => {
                    tracing::info!(device_id = %device, sha256 = %sha, "device reported a failure; the cached image still matches its SHA-256");
                }
                Err(OtaError::Tampered { .. }) => {
                    tracing::error!(device_id = %device, sha256 = %sha, "the image this device was served no longer matches its SHA-256 in the gateway's cache: deleted, audited (ota.image.verify); it is downloaded again from the OTA server");
                }
                Err(e) => {
                    tracing::debug!(device_id = %device, sha256 = %sha, error = %e, "cached image not checked again");
                }
            }
        });
        Ok(())
    }

    async fn record_firmware(&self, device: &DeviceId, version: &Version) {
        let (registry, d, v) = (self.registry.clone(), device.clone(), version.to_string());
        let current = registry.get_async(d.clone()).await.ok().flatten();
        if current.is_some_and(|r| r.firmware_version == v) {
            return;
        }
        let r =
            tokio::task::spawn_blocking(move || registry.set_firmware_version(&d, &v, "gateway"))
                .await;
        if let Ok(Err(e)) | Err(e) =
            r.map_err(|e| crate::registry::RegistryError::Join(e.to_string()))
        {
            tracing::warn!(device_id = %device, error = %e, "cannot record the new firmware version in the registry");
        }
    }

    async fn send_offer(
        &self,
        campaign: &str,
        device: &DeviceId,
        target: &TargetInfo,
        again: bool,
    ) {
        let now = Utc::now();
        let record = self.registry.get_async(device.clone()).await.ok().flatten();
        let Some(record) = record else {
            tracing::warn!(device_id = %device, "offer not sent: the device is no longer enrolled");
            return;
        };
        let d = device.clone();
        let seq = match self.states.run(move |s| s.next_offer_seq(&d, now)).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(device_id = %device, error = %e, "offer not sent: no sequence number");
                return;
            }
        };
        let download_url = match self.image_url.join(&format!("images/{}", target.sha256)) {
            Ok(u) => u.to_string(),
            Err(e) => {
                tracing::error!(error = %e, "offer not sent: ota.image_url cannot take the image path");
                return;
            }
        };
        let offer = OtaOffer {
            schema: SCHEMA_VERSION,
            seq,
            ts: now,
            campaign_id: campaign.to_owned(),
            target_name: target.name.clone(),
            version: target.firmware.version.to_string(),
            length: target.length,
            sha256: target.sha256.clone(),
            hardware_id: record.hardware_id,
            download_url,
            targets_metadata: target.targets_metadata.to_string(),
        };
        match self.offers.send(device, &offer).await {
            Ok(()) => {
                self.metrics.offer(again);
                tracing::info!(campaign_id = campaign, device_id = %device, seq, again, "offer sent");
            }
            Err(e) => {
                tracing::error!(campaign_id = campaign, device_id = %device, error = %e, "offer not sent; it is sent again when the offer times out");
            }
        }
    }

    async fn on_device_event(&self, event: DeviceEvent) -> Result<(), DeviceStateError> {
        match event {
            DeviceEvent::Status { device, status } => {
                let seen = SeenStatus {
                    device_id: device.clone(),
                    activity: status.activity,
                    firmware_version: status.firmware_version.clone(),
                    seen_at: Utc::now(),
                };
                let (s, d) = (seen.clone(), device.clone());
                let rows = self
                    .states
                    .run(move |st| {
                        st.record_status(&s)?;
                        st.updates_of(&d)
                    })
                    .await?;
                for row in rows.into_iter().filter(|r| !r.state.is_terminal()) {
                    let Some(plan) = self.plan_or_stored(&row.campaign_id).await? else {
                        continue;
                    };
                    let input = Input::Status {
                        activity: status.activity,
                        firmware: seen.version(),
                    };
                    self.drive(&row.campaign_id, &plan, &device, input, Some(seen.clone()))
                        .await?;
                }
                Ok(())
            }
            DeviceEvent::Report { device, report } => {
                let Some(plan) = self.plan_or_stored(&report.campaign_id).await? else {
                    tracing::warn!(device_id = %device, campaign_id = %report.campaign_id, "update report for a campaign this gateway does not run; ignored");
                    return Ok(());
                };
                if Version::parse(&report.version).ok() != plan.version {
                    tracing::warn!(device_id = %device, campaign_id = %report.campaign_id, version = %report.version, expected = ?plan.version, "update report for another version; ignored");
                    return Ok(());
                }
                let d = device.clone();
                let status = self.live_status(self.states.run(move |s| s.status(&d)).await?);
                let input = Input::Report {
                    outcome: report.outcome,
                    detail: report.detail.clone(),
                };
                self.drive(&report.campaign_id, &plan, &device, input, status)
                    .await
            }
        }
    }

    async fn on_progress(&self, p: ImageProgress) -> Result<(), DeviceStateError> {
        let (d, sha) = (p.device.clone(), p.sha256.clone());
        let campaigns = self.states.run(move |s| s.open_offers(&d, &sha)).await?;
        for c in campaigns {
            if let Some(plan) = self.plan_or_stored(&c).await? {
                self.drive(&c, &plan, &p.device, Input::ImageBytes, None)
                    .await?;
            }
        }
        Ok(())
    }

    async fn on_tick(&self) -> Result<(), DeviceStateError> {
        let (rows, statuses) = self
            .states
            .run(|s| Ok((s.open_updates()?, s.statuses()?)))
            .await?;
        let statuses: HashMap<DeviceId, SeenStatus> = statuses
            .into_iter()
            .map(|s| (s.device_id.clone(), s))
            .collect();
        let mut plans: HashMap<String, Option<CampaignPlan>> = HashMap::new();
        for row in rows {
            if !plans.contains_key(&row.campaign_id) {
                let plan = self.plan_or_stored(&row.campaign_id).await?;
                plans.insert(row.campaign_id.clone(), plan);
            }
            let Some(Some(plan)) = plans.get(&row.campaign_id) else {
                continue;
            };
            let status = self.live_status(statuses.get(&row.device_id).cloned());
            self.drive(&row.campaign_id, plan, &row.device_id, Input::Tick, status)
                .await?;
        }
        Ok(())
    }

    /// Audit the OTA server becoming unavailable for assignments, or
    /// available again, once per change of the kind of problem (not every
    /// round while it lasts).
    async fn server_problem(&self, problem: Option<&ServerApiError>) {
        let kind = problem.map(|e| format!("{}:{}", e.label(), e.code().unwrap_or("")));
        let changed = {
            let mut last = lock(&self.server_problem);
            let changed = *last != kind;
            last.clone_from(&kind);
            changed
        };
        if !changed {
            return;
        }
        let event = match problem {
            Some(e) => {
                tracing::warn!(error = %e, "OTA server unavailable for assignments");
                AuditEvent::new("gateway", "ota.server", "assignments", Outcome::Refused)
                    .with_detail(serde_json::json!({"reason": e.label(), "error": e.to_string()}))
            }
            None => {
                tracing::info!("OTA server reachable again");
                AuditEvent::new("gateway", "ota.server", "assignments", Outcome::Allowed)
                    .with_detail(serde_json::json!({"reason": "assignments received again"}))
            }
        };
        self.audit(event).await;
    }

    /// One round: inventory, assignments, campaign checks, devices, results,
    /// unused images.
    async fn sync_round(&self) -> Result<(), RolloutError> {
        let registry = self.registry.clone();
        let devices = tokio::task::spawn_blocking(move || registry.list()).await??;
        let statuses = self.states.run(DeviceStates::statuses).await?;
        let inventory = inventory::build(&devices, &statuses);
        match self.server.assignments(&inventory).await {
            Ok(assignments) => {
                self.metrics.server_request("assignments", "ok");
                self.server_problem(None).await;
                self.take_assignments(&assignments, &devices, &statuses)
                    .await?;
            }
            Err(e) => {
                self.metrics.server_request("assignments", e.label());
                self.server_problem(Some(&e)).await;
            }
        }
        self.report_results().await?;
        let keep = self.states.run(DeviceStates::images_in_use).await?;
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        match self.images.remove_unused(&keep).await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(?removed, "removed images no campaign needs any more");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot remove unused images"),
        }
        Ok(())
    }

    async fn take_assignments(
        &self,
        assignments: &[Assignment],
        devices: &[crate::registry::DeviceRecord],
        statuses: &[SeenStatus],
    ) -> Result<(), DeviceStateError> {
        let now = Utc::now();
        let ids: Vec<String> = assignments.iter().map(|a| a.campaign_id.clone()).collect();
        let stopped = self
            .states
            .run(move |s| s.deactivate_others(&ids, now))
            .await?;
        for id in stopped {
            lock(&self.plans).remove(&id);
            tracing::info!(campaign_id = %id, "campaign no longer assigned (paused, halted or completed at the OTA server); nothing new starts");
            self.audit(
                AuditEvent::new("gateway", "ota.campaign", id.as_str(), Outcome::Info)
                    .with_detail(serde_json::json!({"reason": "no longer assigned by the OTA server (paused, halted or completed)"})),
            )
            .await;
        }
        let registry: HashMap<&DeviceId, &crate::registry::DeviceRecord> =
            devices.iter().map(|d| (&d.id, d)).collect();
        let statuses: HashMap<&DeviceId, &SeenStatus> =
            statuses.iter().map(|s| (&s.device_id, s)).collect();
        for a in assignments {
            lock(&self.results_blocked).remove(&a.campaign_id);
            let plan = self.check_campaign(a).await?;
            lock(&self.plans).insert(a.campaign_id.clone(), plan.clone());
            for raw in &a.devices {
                let Ok(device) = DeviceId::parse(raw) else {
                    tracing::warn!(campaign_id = %a.campaign_id, device = %raw, "assigned device id is not valid here; ignored");
                    continue;
                };
                let (c, d, wave) = (a.campaign_id.clone(), device.clone(), a.wave);
                let row = self
                    .states
                    .run(move |s| s.ensure_assigned(&c, &d, wave, now))
                    .await?;
                if row.state.is_terminal() {
                    continue;
                }
                let record = registry.get(&device);
                let withdrawn = match record {
                    None => Some("the device is no longer enrolled at this gateway".to_owned()),
                    Some(r) if r.state == DeviceState::Revoked => {
                        Some("the device was revoked at this gateway".to_owned())
                    }
                    Some(r) => plan.target.as_ref().and_then(|t| {
                        (!t.firmware.hardware_ids.contains(&r.hardware_id)).then(|| {
                            format!(
                                "the device's hardware {} is not among the target's hardware ids {:?}",
                                r.hardware_id, t.firmware.hardware_ids
                            )
                        })
                    }),
                };
                if let Some(reason) = withdrawn {
                    self.drive(
                        &a.campaign_id,
                        &plan,
                        &device,
                        Input::Withdrawn { reason },
                        None,
                    )
                    .await?;
                    continue;
                }
                let seen = statuses.get(&device).copied();
                let firmware = seen
                    .and_then(SeenStatus::version)
                    .or_else(|| record.and_then(|r| Version::parse(&r.firmware_version).ok()));
                self.drive(
                    &a.campaign_id,
                    &plan,
                    &device,
                    Input::Assigned { firmware },
                    None,
                )
                .await?;
            }
            // Every device of the campaign waiting for the gateway (newly
            // assigned, deferred, retried by an operator) and seen since
            // the gateway started: drive it with what it last said.
            let id = a.campaign_id.clone();
            let rows = self.states.run(move |s| s.updates(&id)).await?;
            for row in rows
                .into_iter()
                .filter(|r| matches!(r.state, UpdateState::Pending | UpdateState::Deferred))
            {
                let Some(seen) =
                    self.live_status(statuses.get(&row.device_id).map(|s| (*s).clone()))
                else {
                    continue;
                };
                let input = Input::Status {
                    activity: seen.activity,
                    firmware: seen.version(),
                };
                self.drive(&a.campaign_id, &plan, &row.device_id, input, Some(seen))
                    .await?;
            }
        }
        Ok(())
    }

    /// Record the campaign and decide whether it may proceed: the target
    /// must verify against the TUF metadata (fresh), agree with what the
    /// server says, and its image must be cached.
    async fn check_campaign(&self, a: &Assignment) -> Result<CampaignPlan, DeviceStateError> {
        let now = Utc::now();
        let (ac, at) = (a.clone(), now);
        let record = self
            .states
            .run(move |s| {
                s.upsert_campaign(
                    &AssignedCampaign {
                        id: &ac.campaign_id,
                        target_name: &ac.target,
                        sha256: &ac.sha256,
                        length: ac.length,
                        wave: ac.wave,
                        deferred: ac.deferred.as_deref(),
                    },
                    at,
                )
            })
            .await?;
        let stored_version = record
            .version
            .as_deref()
            .and_then(|v| Version::parse(v).ok());
        let verdict: Result<TargetInfo, (&'static str, String)> = match self.tuf.fresh_target(&a.target, now) {
            Err(e @ (OtaError::NotFresh { .. } | OtaError::NoMetadata)) => {
                self.tuf.request_refresh();
                Err(("metadata_not_fresh", e.to_string()))
            }
            Err(e) => Err(("target_not_verified", e.to_string())),
            Ok(t) if t.sha256 != a.sha256.to_ascii_lowercase() || t.length != a.length => Err((
                "server_disagrees_with_tuf",
                format!(
                    "the OTA server assigns {} as {} bytes with SHA-256 {}, but the signed TUF metadata says {} bytes with SHA-256 {}; nothing is offered",
                    a.target, a.length, a.sha256, t.length, t.sha256
                ),
            )),
            Ok(t) => Ok(t),
        };
        let verdict = match verdict {
            Ok(t) => match self.images.fetch(&t).await {
                Ok(_) => Ok(t),
                Err(e) => Err(("image_not_cached", e.to_string())),
            },
            Err(e) => Err(e),
        };
        let (version, target, note) = match verdict {
            Ok(t) => (Some(t.firmware.version.clone()), Some(t), None),
            Err((reason, words)) => {
                self.metrics.steps_refused.inc(reason);
                (
                    stored_version.clone(),
                    None,
                    Some(format!("{reason}: {words}")),
                )
            }
        };
        if note != record.note {
            match &note {
                Some(n) => {
                    tracing::warn!(campaign_id = %a.campaign_id, problem = %n, "campaign cannot proceed");
                    self.audit(
                        AuditEvent::new(
                            "gateway",
                            "ota.campaign",
                            a.campaign_id.as_str(),
                            Outcome::Refused,
                        )
                        .with_detail(serde_json::json!({"target": a.target, "reason": n})),
                    )
                    .await;
                }
                None => {
                    tracing::info!(campaign_id = %a.campaign_id, "campaign verified; proceeding");
                }
            }
        }
        let (id, v, n) = (
            a.campaign_id.clone(),
            version.as_ref().map(ToString::to_string),
            note.clone(),
        );
        self.states
            .run(move |s| s.set_campaign_facts(&id, v.as_deref(), n.as_deref()))
            .await?;
        let open = target.is_some() && a.deferred.is_none();
        Ok(CampaignPlan {
            version,
            target,
            open,
        })
    }

    async fn report_results(&self) -> Result<(), DeviceStateError> {
        let campaigns = self.states.run(DeviceStates::campaigns).await?;
        for c in campaigns {
            if lock(&self.results_blocked).contains(&c.id) {
                continue;
            }
            let id = c.id.clone();
            let rows = self.states.run(move |s| s.unreported(&id)).await?;
            if rows.is_empty() {
                continue;
            }
            let results: Vec<DeviceResult> = rows
                .iter()
                .filter_map(|r| {
                    Some(DeviceResult {
                        device_id: r.device_id.clone(),
                        outcome: r.state.server_outcome()?,
                        detail: format!("{}: {}", r.state, r.detail),
                    })
                })
                .collect();
            match self.server.results(&c.id, &results).await {
                Ok(state) => {
                    self.metrics.server_request("results", "ok");
                    self.accepted(&c.id, &rows).await?;
                    tracing::info!(campaign_id = %c.id, results = rows.len(), campaign_state = %state.state, "outcomes reported to the OTA server");
                }
                Err(e) if e.code() == Some("not_assigned") && results.len() > 1 => {
                    // All or nothing at the server: find the device it does
                    // not know by reporting one at a time.
                    for (row, result) in rows.iter().zip(&results) {
                        self.report_one(&c.id, row, result).await?;
                    }
                }
                Err(e) if e.code() == Some("not_assigned") => {
                    if let (Some(row), Some(result)) = (rows.first(), results.first()) {
                        self.report_one(&c.id, row, result).await?;
                    }
                }
                Err(e) if e.code() == Some("campaign_state") => {
                    self.metrics.server_request("results", "campaign_state");
                    tracing::info!(campaign_id = %c.id, error = %e, "outcomes kept until the OTA server takes them again");
                    lock(&self.results_blocked).insert(c.id.clone());
                    let (id, n) = (c.id.clone(), e.to_string());
                    self.states
                        .run(move |s| s.set_campaign_facts(&id, None, Some(&n)))
                        .await?;
                }
                Err(e) => {
                    self.metrics.server_request("results", e.label());
                    tracing::warn!(campaign_id = %c.id, error = %e, "outcomes not reported; retrying next round");
                }
            }
        }
        Ok(())
    }

    async fn accepted(
        &self,
        campaign: &str,
        rows: &[DeviceUpdate],
    ) -> Result<(), DeviceStateError> {
        let now = Utc::now();
        let reported: Vec<(DeviceId, UpdateState)> = rows
            .iter()
            .map(|r| (r.device_id.clone(), r.state))
            .collect();
        for (_, state) in &reported {
            if let Some(o) = state.server_outcome() {
                self.metrics.results.inc(match o {
                    crate::ota::device_state::ResultOutcome::Success => "success",
                    crate::ota::device_state::ResultOutcome::Failure => "failure",
                });
            }
        }
        let c = campaign.to_owned();
        self.states
            .run(move |s| s.mark_reported(&c, &reported, now))
            .await
    }

    async fn report_one(
        &self,
        campaign: &str,
        row: &DeviceUpdate,
        result: &DeviceResult,
    ) -> Result<(), DeviceStateError> {
        match self
            .server
            .results(campaign, std::slice::from_ref(result))
            .await
        {
            Ok(_) => {
                self.metrics.server_request("results", "ok");
                self.accepted(campaign, std::slice::from_ref(row)).await
            }
            Err(e) if e.code() == Some("not_assigned") => {
                // The server does not count this device in the campaign:
                // keep the outcome here, do not send it again.
                self.metrics.server_request("results", "not_assigned");
                tracing::warn!(campaign_id = campaign, device_id = %row.device_id, error = %e, "the OTA server does not take this device's outcome");
                self.audit(
                    AuditEvent::new(
                        "gateway",
                        "ota.server",
                        row.device_id.as_str(),
                        Outcome::Refused,
                    )
                    .with_detail(
                        serde_json::json!({"campaign_id": campaign, "reason": e.to_string()}),
                    ),
                )
                .await;
                let (c, r) = (
                    campaign.to_owned(),
                    vec![(row.device_id.clone(), row.state)],
                );
                self.states
                    .run(move |s| s.mark_reported(&c, &r, Utc::now()))
                    .await
            }
            Err(e) => {
                self.metrics.server_request("results", e.label());
                tracing::warn!(campaign_id = campaign, device_id = %row.device_id, error = %e, "outcome not reported; retrying next round");
                Ok(())
            }
        }
    }
}
