//! [`Gateway::start`]: wire the components of one gateway together.
//!
//! Order: context (database, registry, audit, metrics), embedded broker,
//! edge, then the admin server and the uplink. The returned
//! [`GatewayHandle`] carries the bound addresses and shuts everything down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::{BrokerError, BrokerHandle};
use crate::config::Config;
use crate::context::{ContextError, GatewayContext};
use crate::edge::{EdgeError, EdgeHandle};
use crate::registry::DeviceChange;
use crate::sink::TelemetrySink;

/// How often registry changes made by other processes (the `gateway device`
/// CLI) are picked up and pushed to live sessions.
pub const REGISTRY_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What went wrong starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Database, registry or audit log.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The embedded broker.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The device listener.
    #[error(transparent)]
    Edge(#[from] EdgeError),
    /// Another component (admin server, uplink) failed to start.
    #[error("{component} failed to start: {message}")]
    Component {
        /// Which component.
        component: &'static str,
        /// Its error, for the operator.
        message: String,
    },
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
    /// Validate `config` and start everything.
    ///
    /// # Errors
    /// [`GatewayError`] naming the component that could not start.
    pub async fn start(config: Config) -> Result<GatewayHandle, GatewayError> {
        config.validate().map_err(|e| GatewayError::Component {
            component: "configuration",
            message: e.to_string(),
        })?;
        let ctx = GatewayContext::open(config)?;
        let broker = BrokerHandle::start(&ctx.config.broker)?;
        spawn_registry_poller(&ctx);

        // Telemetry sink: the uplink's outbox when the uplink is configured.
        let uplink =
            crate::uplink::Uplink::start_in(&ctx).map_err(|e| GatewayError::Component {
                component: "uplink",
                message: e.to_string(),
            })?;
        let sink: Option<Arc<dyn TelemetrySink>> = ctx.config.uplink.enabled.then(|| uplink.sink());
        let edge = crate::edge::start(ctx.clone(), broker.clone(), sink).await?;

        // Admin HTTPS server.
        let admin_addr = crate::admin::start(
            &ctx,
            &ctx.config.admin,
            ctx.config.uplink.enabled.then(|| uplink.monitor()),
        )
        .map_err(|e| GatewayError::Component {
            component: "admin API",
            message: e.to_string(),
        })?;

        // Uplink bridge.

        ctx.audit
            .append_async(
                crate::audit::AuditEvent::new(
                    "gateway",
                    "gateway.start",
                    "gateway",
                    crate::audit::Outcome::Info,
                )
                .with_detail(serde_json::json!({"edge": edge.addr.to_string()})),
            )
            .await
            .map_err(|e| GatewayError::Component {
                component: "audit log",
                message: e.to_string(),
            })?;
        Ok(GatewayHandle {
            context: ctx,
            broker,
            edge,
            admin_addr,
        })
    }
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
