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
//!
//! [`Uplink::start`] wires these together from an [`UplinkConfig`].

pub mod bridge;
pub mod metrics;
pub mod notice;
pub mod outbox;
pub mod seal;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use bridge::{BridgeSettings, UplinkStatus};
pub use metrics::UplinkMetrics;
pub use outbox::{
    FetchPage, FullPolicy, NoticeHook, Outbox, OutboxDepth, OutboxLimits, PendingMessage,
    UplinkNotice,
};
pub use seal::OutboxKey;

use wardgate_protocol::vitals::VitalKind;

use crate::render::Format;

/// Everything that can go wrong in the uplink.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The gateway database could not be opened or migrated.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// An SQL statement on the outbox failed.
    #[error("outbox database error: {0}; check disk space and the database file")]
    Sql(String),
    /// The outbox key is missing, malformed or unprotected.
    #[error("outbox key: {0}")]
    Key(#[source] wardgate_tls::SealError),
    /// Sealing a payload failed.
    #[error("cannot seal outbox row {id}")]
    Seal {
        /// The row id.
        id: i64,
        /// The cipher's refusal.
        #[source]
        source: wardgate_tls::SealError,
    },
    /// A row did not decrypt: wrong key or tampered row.
    #[error("outbox row {id} does not decrypt with the current key (wrong key file, or the row was altered)")]
    Open {
        /// The row id.
        id: i64,
        /// The cipher's refusal.
        #[source]
        source: wardgate_tls::SealError,
    },
    /// The outbox thread could not start.
    #[error("cannot start the outbox thread: {0}")]
    Thread(String),
    /// The outbox was shut down.
    #[error("outbox is shut down")]
    Closed,
    /// A TLS file for the upstream connection is unusable (the error names
    /// the `uplink.*` field).
    #[error("uplink TLS: {0}")]
    Tls(#[from] wardgate_tls::TlsError),
    /// An invalid setting in the `[uplink]` section.
    #[error("invalid setting uplink.{field}: {reason}")]
    Config {
        /// The field name.
        field: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
}

impl From<rusqlite::Error> for UplinkError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e.to_string())
    }
}

/// The `[uplink]` section of the gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// Forward telemetry upstream. When false, the outbox still stores
    /// telemetry (bounded) but nothing is sent.
    pub enabled: bool,
    /// Upstream broker host name or address (must match its certificate).
    pub broker_host: String,
    /// Upstream broker TLS port.
    pub broker_port: u16,
    /// MQTT client id at the upstream broker.
    pub client_id: String,
    /// PEM CA bundle that signs the upstream broker's certificate.
    pub ca_file: PathBuf,
    /// PEM client certificate chain presented to the upstream broker.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`.
    pub key_file: PathBuf,
    /// Prefix of upstream topics: `<prefix>/devices/<id>/telemetry` (json)
    /// and `<prefix>/devices/<id>/fhir/Observation` (fhir).
    pub topic_prefix: String,
    /// Upstream renderings, each published for every message.
    pub formats: Vec<Format>,
    /// Most unacknowledged upstream publishes (MQTT inflight window).
    pub max_inflight: u16,
    /// MQTT keep-alive.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// First reconnect delay; doubles per failure up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Cap of the reconnect delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Most messages kept in the outbox.
    pub outbox_max_rows: u64,
    /// Most sealed payload bytes kept in the outbox.
    pub outbox_max_bytes: u64,
    /// What to do with new telemetry when the outbox is full.
    pub full_policy: FullPolicy,
    /// Vital kinds that make a message critical: `drop_oldest` never drops
    /// a message carrying one of them.
    pub critical_kinds: Vec<VitalKind>,
    /// Outbox key file (base64, mode 0600), created on first start; the
    /// `WARDGATE_OUTBOX_KEY` variable takes precedence. Relative paths are
    /// resolved against the data directory.
    pub outbox_key_file: PathBuf,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            broker_host: String::new(),
            broker_port: 8883,
            client_id: "wardgate-gateway".into(),
            ca_file: PathBuf::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            topic_prefix: "wardgate/ward".into(),
            formats: vec![Format::Json, Format::Fhir],
            max_inflight: 64,
            keep_alive: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            outbox_max_rows: 1_000_000,
            outbox_max_bytes: 512 * 1024 * 1024,
            full_policy: FullPolicy::Refuse,
            critical_kinds: vec![VitalKind::Spo2, VitalKind::HeartRate],
            outbox_key_file: PathBuf::from("outbox.key"),
        }
    }
}

impl UplinkConfig {
    /// Refuse invalid or insecure settings, naming the field.
    ///
    /// # Errors
    /// [`UplinkError::Config`] for the first bad field.
    pub fn validate(&self) -> Result<(), UplinkError> {
        let bad = |field, reason: &str| {
            Err(UplinkError::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.outbox_max_rows == 0 {
            return bad("outbox_max_rows", "must be at least 1");
        }
        if self.outbox_max_bytes < 4096 {
            return bad("outbox_max_bytes", "must be at least 4096");
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return bad(
                "backoff_initial",
                "must be > 0 and not above uplink.backoff_max",
            );
        }
        if self.topic_prefix.is_empty()
            || self.topic_prefix.contains(['#', '+', '\0'])
            || self.topic_prefix.starts_with('/')
            || self.topic_prefix.ends_with('/')
        {
            return bad(
                "topic_prefix",
                "must be a non-empty MQTT topic without wildcards or leading/trailing '/'",
            );
        }
        if !self.enabled {
            return Ok(());
        }
        if self.broker_host.is_empty() {
            return bad("broker_host", "required when uplink.enabled = true");
        }
        if self.broker_port == 0 {
            return bad("broker_port", "must not be 0");
        }
        if self.client_id.is_empty() || self.client_id.len() > 128 {
            return bad("client_id", "must be 1..=128 characters");
        }
        if self.formats.is_empty() {
            return bad("formats", "list at least one of \"json\", \"fhir\"");
        }
        if self.max_inflight == 0 {
            return bad("max_inflight", "must be at least 1");
        }
        for (field, path) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if path.as_os_str().is_empty() {
                return bad(
                    field,
                    "required when uplink.enabled = true (TLS with a client certificate is mandatory)",
                );
            }
        }
        Ok(())
    }

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
    /// metric families, and start the bridge if enabled.
    ///
    /// # Errors
    /// [`UplinkError`] if the configuration, key, TLS files or database are
    /// unusable.
    pub fn start(
        config: &UplinkConfig,
        data_dir: &Path,
        db_path: &Path,
        registry: &mut prometheus_client::registry::Registry,
        notices: Option<NoticeHook>,
        devices: Option<bridge::DeviceDirectory>,
        cancel: CancellationToken,
    ) -> Result<Self, UplinkError> {
        config.validate()?;
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
        let devices: bridge::DeviceDirectory = Arc::new(move |id: &str| {
            let id = wardgate_protocol::DeviceId::parse(id).ok()?;
            let record = registry.get(&id).ok()??;
            Some(crate::render::fhir::DeviceInfo {
                id: record.id.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_refuse_and_disabled() {
        let c = UplinkConfig::default();
        c.validate().unwrap();
        assert!(!c.enabled);
        assert_eq!(c.full_policy, FullPolicy::Refuse);
    }

    #[test]
    fn documented_example_parses() {
        let doc = include_str!("../../../docs/uplink.md");
        let start = doc.find("```toml\n[uplink]\n").unwrap() + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let table: toml::Table = doc[start..end].parse().unwrap();
        let c: UplinkConfig = table["uplink"].clone().try_into().unwrap();
        assert!(c.enabled);
        assert_eq!(c.formats, vec![Format::Json, Format::Fhir]);
        assert_eq!(
            c.critical_kinds,
            vec![VitalKind::Spo2, VitalKind::HeartRate]
        );
        c.validate().unwrap();
    }

    #[test]
    fn refuses_bad_settings_naming_the_field() {
        let enabled = UplinkConfig {
            enabled: true,
            broker_host: "mqtt.example".into(),
            ca_file: "ca.pem".into(),
            cert_file: "c.pem".into(),
            key_file: "c.key".into(),
            ..UplinkConfig::default()
        };
        enabled.validate().unwrap();
        let cases: Vec<(&str, UplinkConfig)> = vec![
            (
                "broker_host",
                UplinkConfig {
                    broker_host: String::new(),
                    ..enabled.clone()
                },
            ),
            (
                "key_file",
                UplinkConfig {
                    key_file: PathBuf::new(),
                    ..enabled.clone()
                },
            ),
            (
                "topic_prefix",
                UplinkConfig {
                    topic_prefix: "ward/#".into(),
                    ..enabled.clone()
                },
            ),
            (
                "formats",
                UplinkConfig {
                    formats: vec![],
                    ..enabled.clone()
                },
            ),
            (
                "outbox_max_rows",
                UplinkConfig {
                    outbox_max_rows: 0,
                    ..enabled.clone()
                },
            ),
            (
                "max_inflight",
                UplinkConfig {
                    max_inflight: 0,
                    ..enabled.clone()
                },
            ),
            (
                "backoff_initial",
                UplinkConfig {
                    backoff_max: Duration::from_millis(1),
                    ..enabled.clone()
                },
            ),
        ];
        for (field, c) in cases {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("uplink.{field}")), "{field}: {err}");
        }
    }

    #[test]
    fn unknown_fields_and_policies_are_refused() {
        let bad: Result<UplinkConfig, _> = toml::from_str("full_policy = \"drop_newest\"");
        assert!(bad.is_err());
        let bad: Result<UplinkConfig, _> = toml::from_str("brokerhost = \"x\"");
        assert!(bad.unwrap_err().to_string().contains("brokerhost"));
    }
}
