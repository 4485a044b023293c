//! Store-and-forward uplink to the hospital broker: a durable, encrypted
//! outbox and a `rumqttc` bridge that removes a message only once the upstream
//! broker has acknowledged it.
//!
//! - [`outbox`]: the bounded SQLite outbox with group commit on a dedicated
//!   thread; [`Outbox`] implements [`crate::sink::TelemetrySink`], so the edge
//!   acknowledges a device only after its message is on disk.
//! - [`seal`]: ChaCha20-Poly1305 sealing of every stored payload under an
//!   [`OutboxKey`] kept outside the database.
//! - [`bridge`]: the MQTT client (TLS with a client certificate, QoS 1) that
//!   drains the outbox in id order, renders each message in the configured
//!   [`crate::render::Format`]s and reconnects with capped exponential
//!   backoff and jitter.
//! - [`metrics`]: the `wardgate_uplink_*` families; [`UplinkStatus`] is what
//!   the admin API shows.
//! - [`notice`]: outbox and link alerts into the audit log.
//! - [`error`]: [`UplinkError`]. The `[uplink]` section ([`UplinkConfig`])
//!   is a plain struct in the gateway's leaf config module, validated once
//!   with the rest of the configuration.
//!
//! [`Uplink::start`] wires these together from an [`UplinkConfig`].

pub mod bridge;
pub mod error;
pub mod metrics;
pub mod notice;
pub mod outbox;
pub mod seal;

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use wardgate_protocol::DeviceId;

pub use crate::config::UplinkConfig;
pub use bridge::{BridgeSettings, UplinkStatus};
pub use error::UplinkError;
pub use metrics::UplinkMetrics;
pub use outbox::{
    FetchPage, FullPolicy, NoticeHook, Outbox, OutboxDepth, OutboxLimits, PendingMessage,
    UplinkNotice,
};
pub use seal::OutboxKey;

impl UplinkConfig {
    /// The outbox limits of this configuration.
    #[must_use]
    pub fn limits(&self) -> OutboxLimits {
        OutboxLimits {
            max_rows: self.outbox_max_rows,
            max_bytes: self.outbox_max_bytes,
            full_policy: self.full_policy,
            critical_kinds: self.critical_kinds.clone(),
        }
    }
}

/// The running uplink: the outbox (hand it to the edge as its sink) and,
/// when enabled, the bridge task.
#[derive(Debug)]
pub struct Uplink {
    monitor: UplinkMonitor,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A cheap, cloneable view of the uplink for the admin API and tests.
#[derive(Debug, Clone)]
pub struct UplinkMonitor {
    outbox: Outbox,
    link: Option<bridge::LinkStatus>,
    broker: Option<String>,
}

impl UplinkMonitor {
    /// Connection and outbox status.
    #[must_use]
    pub fn status(&self) -> UplinkStatus {
        let (connected, last_error) = self
            .link
            .as_ref()
            .map_or((false, None), bridge::LinkStatus::get);
        UplinkStatus::new(
            self.broker.clone(),
            connected,
            last_error,
            self.outbox.depth(),
        )
    }

    /// The outbox.
    #[must_use]
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

impl Uplink {
    /// Open the outbox in `db_path` (key from the environment or
    /// `config.outbox_key_file`, resolved against `data_dir`), register the
    /// metric families, and start the bridge if enabled. `config` is the
    /// `[uplink]` section of a validated configuration
    /// ([`crate::config::ValidConfig`]); it is not checked again here.
    ///
    /// # Errors
    /// [`UplinkError`] if the key, TLS files or database are unusable.
    pub fn start(
        config: &UplinkConfig,
        data_dir: &Path,
        db_path: &Path,
        registry: &mut prometheus_client::registry::Registry,
        notices: Option<NoticeHook>,
        devices: Option<bridge::DeviceDirectory>,
        cancel: CancellationToken,
    ) -> Result<Self, UplinkError> {
        let key_path = data_dir.join(&config.outbox_key_file);
        let key = OutboxKey::load_or_create(&key_path)?;
        let metrics = UplinkMetrics::register(registry);
        let outbox = Outbox::open(db_path, key, config.limits(), metrics, notices.clone())?;
        if !config.enabled {
            tracing::warn!("uplink disabled (uplink.enabled = false): telemetry is kept in the outbox but not forwarded");
            return Ok(Self {
                monitor: UplinkMonitor {
                    outbox,
                    link: None,
                    broker: None,
                },
                task: None,
            });
        }
        let mut settings = BridgeSettings::from_config(config)?;
        settings.devices = devices;
        settings.notices = notices;
        let broker = format!("{}:{}", settings.host, settings.port);
        let (link, task) = bridge::spawn(settings, outbox.clone(), cancel);
        Ok(Self {
            monitor: UplinkMonitor {
                outbox,
                link: Some(link),
                broker: Some(broker),
            },
            task: Some(task),
        })
    }

    /// Start the uplink of a gateway: its `[uplink]` section, the gateway
    /// database, the shared metrics registry, outbox alerts written to the
    /// audit log, and the bridge tracked by the gateway's task tracker (so
    /// shutdown waits for it).
    ///
    /// # Errors
    /// As [`Uplink::start`].
    pub fn start_in(ctx: &crate::context::GatewayContext) -> Result<Self, UplinkError> {
        let hook = notice::audit_hook(ctx.audit.clone());
        let registry = ctx.registry.clone();
        let devices: bridge::DeviceDirectory = Arc::new(move |id: &DeviceId| {
            let record = registry.get(id).ok()??;
            Some(crate::render::fhir::DeviceInfo {
                id: record.id,
                manufacturer: record.manufacturer,
                model: record.model,
                hardware_id: record.hardware_id,
                firmware_version: record.firmware_version,
                active: record.state == crate::registry::DeviceState::Active,
            })
        });
        let mut uplink = ctx.metrics.with_registry(|registry| {
            Self::start(
                &ctx.config.uplink,
                &ctx.data_dir,
                &ctx.db_path,
                registry,
                Some(hook),
                Some(devices),
                ctx.shutdown.child_token(),
            )
        })?;
        if let Some(task) = uplink.task.take() {
            ctx.tasks.spawn(async move {
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "uplink bridge task failed");
                }
            });
        }
        Ok(uplink)
    }

    /// The outbox, to hand to the edge as its [`crate::sink::TelemetrySink`].
    #[must_use]
    pub fn outbox(&self) -> &Outbox {
        &self.monitor.outbox
    }

    /// The outbox as a shareable sink.
    #[must_use]
    pub fn sink(&self) -> Arc<dyn crate::sink::TelemetrySink> {
        Arc::new(self.monitor.outbox.clone())
    }

    /// Connection and outbox status for the admin API.
    #[must_use]
    pub fn status(&self) -> UplinkStatus {
        self.monitor.status()
    }

    /// A cloneable status view (for the admin API).
    #[must_use]
    pub fn monitor(&self) -> UplinkMonitor {
        self.monitor.clone()
    }

    /// Wait for the bridge task to end (after the cancellation token fired),
    /// unless [`Uplink::start_in`] handed it to the gateway's task tracker.
    pub async fn join(self) {
        if let Some(task) = self.task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "uplink bridge task failed");
            }
        }
    }
}
