//! [`Gateway::start`]: wire the components of one gateway together from one
//! validated configuration.
//!
//! Order: configuration (validated once, unless it already is a
//! [`ValidConfig`]), context (database, registry, audit, metrics), embedded
//! broker, the uplink's outbox (the edge's telemetry sink), edge, the OTA
//! agent when the file has an `[ota]` section, then the admin server. The returned [`GatewayHandle`] carries the bound addresses
//! and shuts everything down. A component that cannot start is named in
//! [`GatewayError`], with its own error as the source.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::AdminError;
use crate::audit::{AuditError, AuditEvent, Outcome};
use crate::broker::{BrokerError, BrokerHandle};
use crate::config::{ConfigError, IntoValidConfig, ValidConfig};
use crate::context::{ContextError, GatewayContext};
use crate::edge::{EdgeError, EdgeHandle};
use crate::ota::{OtaService, OtaStartError};
use crate::registry::DeviceChange;
use crate::sink::TelemetrySink;
use crate::uplink::{Uplink, UplinkError};

/// How often registry changes made by other processes (the `gateway device`
/// CLI) are picked up and pushed to live sessions.
pub const REGISTRY_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What went wrong starting the gateway: one variant per component, each
/// keeping the component's own error as its source.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration was refused (names the field).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Database, registry or audit log.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The embedded broker.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The device listener.
    #[error(transparent)]
    Edge(#[from] EdgeError),
    /// The uplink (outbox, its key, or the bridge's TLS files).
    #[error("uplink failed to start")]
    Uplink(#[source] UplinkError),
    /// The anomaly detector (its alert store or publisher).
    #[error("anomaly detector failed to start")]
    Anomaly(#[source] crate::anomaly::AnomalyError),
    /// The admin HTTPS server (TLS files, token store, listen address).
    #[error("admin API failed to start")]
    Admin(#[source] AdminError),
    /// The OTA agent (`[ota]`): TUF client, image cache or rollout.
    #[error("OTA agent failed to start")]
    Ota(#[source] OtaStartError),
    /// Audit anchoring (its key, or the publisher's TLS files).
    #[error("audit anchoring failed to start")]
    Anchoring(#[source] crate::anchoring::AnchoringError),
    /// The `gateway.start` row could not be written to the audit log.
    #[error("audit log failed to start: cannot write the gateway.start row")]
    Audit(#[source] AuditError),
}

/// A running gateway.
#[derive(Debug)]
pub struct GatewayHandle {
    /// Shared state (registry, audit, metrics, shutdown token).
    pub context: Arc<GatewayContext>,
    /// The embedded broker (local links for in-process subscribers).
    pub broker: BrokerHandle,
    /// The device listener.
    pub edge: EdgeHandle,
    /// The admin HTTPS server, when enabled.
    pub admin_addr: Option<SocketAddr>,
    /// The OTA agent, when the configuration has an `[ota]` section.
    pub ota: Option<OtaService>,
}

impl GatewayHandle {
    /// The device listener's address.
    #[must_use]
    pub fn edge_addr(&self) -> SocketAddr {
        self.edge.addr
    }

    /// Stop every component and wait (up to `grace`) for their tasks.
    pub async fn shutdown(self, grace: Duration) {
        self.context.shutdown.cancel();
        self.context.tasks.close();
        if tokio::time::timeout(grace, self.context.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(?grace, "some gateway tasks did not stop in time");
        }
    }
}

/// Entry point of a gateway process or test.
#[derive(Debug)]
pub struct Gateway;

impl Gateway {
    /// Start everything from `config`: a [`ValidConfig`] (as `gateway run`
    /// loads it, validated once) or a plain [`crate::config::Config`], which
    /// is validated here.
    ///
    /// # Errors
    /// [`GatewayError`] naming the component that could not start.
    pub async fn start(config: impl IntoValidConfig) -> Result<GatewayHandle, GatewayError> {
        let config: ValidConfig = config.into_valid()?;
        let ctx = GatewayContext::open(config)?;
        match Self::start_components(&ctx).await {
            Ok(Started {
                broker,
                edge,
                admin_addr,
                ota,
            }) => Ok(GatewayHandle {
                context: ctx,
                broker,
                edge,
                admin_addr,
                ota,
            }),
            Err(e) => {
                // Stop what did start (edge, uplink, poller) before reporting.
                ctx.shutdown.cancel();
                Err(e)
            }
        }
    }

    async fn start_components(ctx: &Arc<GatewayContext>) -> Result<Started, GatewayError> {
        let broker = BrokerHandle::start(&ctx.config.broker);
        spawn_registry_poller(ctx);

        // Telemetry sink: the uplink's outbox when the uplink is configured.
        let uplink = Uplink::start_in(ctx).map_err(GatewayError::Uplink)?;
        let forwarding = ctx.config.uplink.enabled;
        // Off: replay state only, stored the same way (edge::replay).
        let inner: Arc<dyn TelemetrySink> = if forwarding {
            uplink.sink()
        } else {
            Arc::new(uplink.outbox().seq_ledger())
        };
        // The console charts what the sink took.
        let sink = Some(crate::console::RecordingSink::over(
            ctx.recent.clone(),
            Some(inner),
        ));
        let anomaly = crate::anomaly::Anomaly::start(ctx).map_err(GatewayError::Anomaly)?;
        let observer = anomaly.as_ref().map(crate::anomaly::Anomaly::observer);
        let edge = crate::edge::start(ctx.clone(), broker.clone(), sink, observer).await?;

        // The OTA agent, when `[ota]` is configured.
        let ota = match &ctx.config.ota {
            Some(section) => Some(
                OtaService::start(ctx, &broker, section)
                    .await
                    .map_err(GatewayError::Ota)?,
            ),
            None => {
                tracing::info!("OTA agent off (no [ota] section)");
                None
            }
        };

        // Admin HTTPS server, with the uplink's status when it forwards and
        // the rollout's progress when OTA runs.
        let admin_addr = crate::admin::start(
            ctx,
            forwarding.then(|| uplink.monitor()),
            ota.as_ref().map(|o| o.rollout.clone()),
        )
        .map_err(GatewayError::Admin)?;

        ctx.audit
            .append_async(
                AuditEvent::new("gateway", "gateway.start", "gateway", Outcome::Info).with_detail(
                    serde_json::json!({
                        "edge": edge.addr.to_string(),
                        "ota_image_server": ota.as_ref().map(|o| o.rollout.image_addr.to_string()),
                    }),
                ),
            )
            .await
            .map_err(GatewayError::Audit)?;
        // After `gateway.start`, so that the first anchor covers it.
        crate::anchoring::spawn(ctx).map_err(GatewayError::Anchoring)?;
        Ok(Started {
            broker,
            edge,
            admin_addr,
            ota,
        })
    }
}

/// What [`Gateway::start_components`] started.
struct Started {
    broker: BrokerHandle,
    edge: EdgeHandle,
    admin_addr: Option<SocketAddr>,
    ota: Option<OtaService>,
}

/// Watch the registry table for changes made by other processes (the CLI)
/// and announce them to live sessions, as in-process changes are.
fn spawn_registry_poller(ctx: &Arc<GatewayContext>) {
    let ctx2 = ctx.clone();
    ctx.tasks.spawn(async move {
        let registry = ctx2.registry.clone();
        let mut known = std::collections::HashMap::new();
        let mut first = true;
        loop {
            let r = registry.clone();
            let list = tokio::task::spawn_blocking(move || r.list()).await;
            if let Ok(Ok(devices)) = list {
                for d in devices {
                    let previous = known.insert(d.id.clone(), d.state);
                    if !first && previous.is_some_and(|p| p != d.state) {
                        registry.announce(DeviceChange {
                            device: d.id,
                            state: d.state,
                        });
                    }
                }
            }
            first = false;
            tokio::select! {
                () = ctx2.shutdown.cancelled() => break,
                () = tokio::time::sleep(REGISTRY_POLL_INTERVAL) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::config::Config;
    use crate::pki::Ca;

    /// A valid configuration on loopback ports in `dir`.
    fn config(dir: &std::path::Path) -> Config {
        let ca = Ca::generate("test CA", 30).unwrap();
        let (ca_cert, _) = ca.write(dir).unwrap();
        let server = ca.issue_server(&["127.0.0.1".to_owned()], 30).unwrap();
        let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
        server.write(&cert, &key).unwrap();
        let mut c = Config::default();
        c.storage.data_dir = dir.join("state");
        c.edge.listen = "127.0.0.1:0".parse().unwrap();
        c.edge.ca_cert = ca_cert;
        c.edge.server_cert = cert;
        c.edge.server_key = key;
        c.admin.bind = "127.0.0.1:0".parse().unwrap();
        c
    }

    #[tokio::test]
    async fn a_refused_config_is_named_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.admin.totp_skew_steps = 9;
        match Gateway::start(c).await {
            Err(GatewayError::Config(ConfigError::Invalid { field, .. })) => {
                assert_eq!(field, "admin.totp_skew_steps");
            }
            other => panic!("expected a config refusal, got {other:?}"),
        }
        assert!(
            !dir.path().join("state").exists(),
            "nothing was created for a refused configuration"
        );
    }

    #[tokio::test]
    async fn a_component_that_cannot_start_is_named_with_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = config(dir.path());
        c.admin.bind = taken.local_addr().unwrap();
        let valid = c.validate().unwrap();
        let err = Gateway::start(valid).await.unwrap_err();
        assert!(
            matches!(err, GatewayError::Admin(AdminError::Bind { .. })),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "admin API failed to start");
        let cause = err.source().map(ToString::to_string).unwrap_or_default();
        assert!(cause.contains("admin.bind"), "{cause}");
    }
}
