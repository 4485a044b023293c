//! The admin HTTPS server: TLS (rustls, ring), the listener, the HTTP/1 and
//! HTTP/2 connection limits, and shutdown.
//!
//! [`AdminServer::start`] serves the router of [`super::routes`] over TLS
//! on `admin.bind` until the gateway's [`CancellationToken`] fires; the TLS
//! handshake and the request headers must arrive within
//! `admin.handshake_timeout`. Every request passes the per-peer limit of
//! [`super::peer_limit`] first, keyed by the connection's address
//! (`ConnectInfo`). [`start`] wires it into a running gateway.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wardgate_tls::{Credentials, ServerTls, ALPN_HTTP};

use super::error::AdminError;
use super::peer_limit::{self, PeerLimit};
use super::routes::router;
use super::state::AdminState;
use crate::access::clock::{Clock, SystemClock};
use crate::access::token::store::TokenStore;
use crate::context::GatewayContext;
use crate::uplink::UplinkMonitor;

/// Load a PEM certificate chain and private key into a TLS 1.2/1.3 server
/// configuration (ring provider, ALPN h2 and http/1.1, no client
/// certificates: callers authenticate with tokens).
///
/// # Errors
/// [`AdminError::Tls`] naming `admin.tls_cert` / `admin.tls_key` and what to fix.
pub fn load_tls(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<rustls::ServerConfig>, AdminError> {
    server_tls(("admin.tls_cert", cert_path), ("admin.tls_key", key_path))
}

/// As [`load_tls`], naming the fields the files came from.
fn server_tls(
    (cert_field, cert_path): (&'static str, &Path),
    (key_field, key_path): (&'static str, &Path),
) -> Result<Arc<rustls::ServerConfig>, AdminError> {
    let credentials = Credentials::load(cert_field, cert_path, key_field, key_path)?;
    let config = ServerTls::new(credentials).alpn(ALPN_HTTP).build()?;
    Ok(Arc::new(config))
}

/// A running admin server.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    handle: axum_server::Handle,
    task: JoinHandle<io::Result<()>>,
}

impl AdminServer {
    /// Bind `state.config.bind` and serve the admin API over TLS until
    /// `shutdown` is cancelled (or [`AdminServer::shutdown`] is called).
    ///
    /// # Errors
    /// [`AdminError::Bind`] if the address cannot be bound.
    pub fn start(
        state: Arc<AdminState>,
        tls: Arc<rustls::ServerConfig>,
        shutdown: CancellationToken,
    ) -> Result<Self, AdminError> {
        let bind = state.config.bind;
        let bind_err = |source| AdminError::Bind { addr: bind, source };
        let listener = std::net::TcpListener::bind(bind).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(tls))
            .handshake_timeout(state.config.handshake_timeout);
        let handle = axum_server::Handle::new();
        let header_timeout = state.config.handshake_timeout;
        let streams = u32::try_from(state.config.max_concurrent_requests).unwrap_or(u32::MAX);
        // Outermost, so a client over its limit costs no token check, no
        // audit row and no concurrency slot.
        let limit = Arc::new(PeerLimit::new(&state.config, state.metrics.clone()));
        let app = router(state)
            .layer(axum::middleware::from_fn_with_state(
                limit,
                peer_limit::limit,
            ))
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut server = axum_server::from_tcp(listener)
            .acceptor(acceptor)
            .handle(handle.clone());
        // Slow clients: request headers must arrive within the handshake budget.
        server
            .http_builder()
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout);
        server
            .http_builder()
            .http2()
            .max_concurrent_streams(streams);
        let watcher = handle.clone();
        let task = tokio::spawn(async move {
            let serve = server.serve(app);
            tokio::pin!(serve);
            tokio::select! {
                res = &mut serve => res,
                () = shutdown.cancelled() => {
                    watcher.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
                    serve.await
                }
            }
        });
        tracing::info!(addr = %local_addr, "admin API listening (HTTPS)");
        Ok(Self {
            local_addr,
            handle,
            task,
        })
    }

    /// The bound address (useful with port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Wait until the server has stopped (after its shutdown token fired).
    pub async fn wait(self) {
        match self.task.await {
            Ok(Ok(())) => tracing::info!("admin API stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "admin API server ended with an error"),
            Err(e) => tracing::error!(error = %e, "admin API server task failed"),
        }
    }

    /// Stop accepting, let in-flight requests finish (up to 5 s) and wait.
    pub async fn shutdown(self) {
        self.handle
            .graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "admin API server ended with an error"),
            Err(e) => tracing::error!(error = %e, "admin API server task failed"),
        }
    }
}

/// Start the admin API of a running gateway (called by [`crate::app`]) from
/// its validated `[admin]` section: token store on the gateway database,
/// TLS from `admin.tls_cert`/`tls_key` or else the edge's server
/// certificate, the shared registry, audit log and metrics, stopped by the
/// gateway's shutdown token and tracked by its task tracker. Returns the
/// bound address, or `None` when `admin.enabled` is off.
///
/// # Errors
/// [`AdminError`] if the certificate, database or address cannot be used.
pub fn start(
    ctx: &Arc<GatewayContext>,
    uplink: Option<UplinkMonitor>,
    ota: Option<crate::ota::agent::RolloutHandle>,
) -> Result<Option<SocketAddr>, AdminError> {
    let config = &ctx.config.admin;
    if !config.enabled {
        tracing::info!("admin API disabled (admin.enabled = false)");
        return Ok(None);
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => load_tls(cert, key)?,
        _ => server_tls(
            ("edge.server_cert", &ctx.config.edge.server_cert),
            ("edge.server_key", &ctx.config.edge.server_key),
        )?,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tokens = Arc::new(TokenStore::open(
        &ctx.db_path,
        clock,
        config.totp_skew_steps,
    )?);
    let mut state = AdminState::new(
        config.clone(),
        tokens,
        ctx.registry.clone(),
        ctx.audit.clone(),
        ctx.metrics.clone(),
    )
    .with_recent(ctx.recent.clone());
    if let Some(uplink) = uplink {
        state = state.with_uplink(uplink);
    }
    if let Some(rollout) = ota {
        state = state.with_ota(rollout);
    }
    if ctx.config.anomaly.enabled {
        let alerts = crate::anomaly::AlertStore::open(&ctx.db_path).map_err(AdminError::Alerts)?;
        state = state.with_alerts(alerts);
    }
    let state = Arc::new(state);
    let server = AdminServer::start(state, tls, ctx.shutdown.clone())?;
    let addr = server.local_addr();
    ctx.tasks.spawn(server.wait());
    Ok(Some(addr))
}
