//! The admin HTTPS server: TLS (rustls, ring), routes, limits and shutdown.
//!
//! [`router`] maps every route to an [`Action`] and puts the guard of
//! [`super::auth`] in front of it; [`AdminServer::start`] serves that router
//! over TLS on the configured address until the gateway's
//! [`CancellationToken`] fires. Limits: request body size
//! (`admin.max_body_bytes`), time per request (`admin.request_timeout`),
//! concurrent requests (`admin.max_concurrent_requests`) and the TLS
//! handshake (`admin.handshake_timeout`).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wardgate_tls::{Credentials, ServerTls, ALPN_HTTP};

use super::api;
use super::auth;
use super::config::AdminConfig;
use super::error::ApiError;
use super::policy::Action;
use super::token::TokenStore;
use super::AdminError;
use crate::audit::AuditLog;
use crate::metrics::{Labels, Metrics};
use crate::registry::Registry;

/// The admin component's metric families.
#[derive(Debug, Clone, Default)]
pub struct AdminMetrics {
    /// `wardgate_admin_refusals_total{reason}`.
    pub refusals: Family<Labels, Counter>,
    /// `wardgate_admin_requests_total{action}`: authorised calls.
    pub requests: Family<Labels, Counter>,
}

impl AdminMetrics {
    /// New families, registered in the shared registry.
    #[must_use]
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "wardgate_admin_refusals",
            "Admin API calls refused, by reason",
            this.refusals.clone(),
        );
        metrics.register(
            "wardgate_admin_requests",
            "Authorised admin API calls, by action",
            this.requests.clone(),
        );
        this
    }

    /// Count a refusal.
    pub fn refusal(&self, reason: &str) {
        self.refusals
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }

    /// Count an authorised call.
    pub fn request(&self, action: &str) {
        self.requests
            .get_or_create(&vec![("action".to_owned(), action.to_owned())])
            .inc();
    }

    /// Current value of `wardgate_admin_refusals_total{reason}`.
    #[must_use]
    pub fn refusal_count(&self, reason: &str) -> u64 {
        self.refusals
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .get()
    }
}

/// Everything the handlers use.
#[derive(Debug)]
pub struct AdminState {
    /// The `[admin]` section.
    pub config: AdminConfig,
    /// Access tokens.
    pub tokens: Arc<TokenStore>,
    /// The device registry.
    pub registry: Registry,
    /// The audit log.
    pub audit: AuditLog,
    /// The shared metrics registry (for `/metrics`).
    pub shared_metrics: Metrics,
    /// The admin families.
    pub metrics: AdminMetrics,
    /// When the server started (for `status`).
    pub started: Instant,
    /// The uplink's connection and outbox status, when an uplink runs.
    pub uplink: Option<crate::uplink::UplinkMonitor>,
}

impl AdminState {
    /// Assemble the state and register the admin metric families.
    #[must_use]
    pub fn new(
        config: AdminConfig,
        tokens: Arc<TokenStore>,
        registry: Registry,
        audit: AuditLog,
        shared_metrics: Metrics,
    ) -> Self {
        let metrics = AdminMetrics::register(&shared_metrics);
        Self {
            config,
            tokens,
            registry,
            audit,
            shared_metrics,
            metrics,
            started: Instant::now(),
            uplink: None,
        }
    }

    /// Show this uplink's status in `GET /api/v1/status`.
    #[must_use]
    pub fn with_uplink(mut self, uplink: crate::uplink::UplinkMonitor) -> Self {
        self.uplink = Some(uplink);
        self
    }
}

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

fn guarded(
    state: &Arc<AdminState>,
    action: Action,
    route: MethodRouter<Arc<AdminState>>,
) -> MethodRouter<Arc<AdminState>> {
    route.route_layer(middleware::from_fn_with_state(
        state.clone(),
        move |s: State<Arc<AdminState>>, req: Request, next: Next| {
            auth::guard(s, action, req, next)
        },
    ))
}

async fn time_limit(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than admin.request_timeout ({limit:?}); retry, or check the gateway's load"),
        )
        .into_response(),
    }
}

/// The admin API routes, each behind the guard with its [`Action`].
pub fn router(state: Arc<AdminState>) -> Router {
    let s = &state;
    Router::new()
        .route("/healthz", get(api::healthz))
        .route(
            "/metrics",
            guarded(s, Action::ReadMetrics, get(api::metrics)),
        )
        .route(
            "/api/v1/status",
            guarded(s, Action::ReadStatus, get(api::status)),
        )
        .route(
            "/api/v1/devices",
            guarded(s, Action::ReadDevices, get(api::list_devices)).merge(guarded(
                s,
                Action::EnrollDevice,
                post(api::enroll_device),
            )),
        )
        .route(
            "/api/v1/devices/{id}",
            guarded(s, Action::ReadDevices, get(api::get_device)),
        )
        .route(
            "/api/v1/devices/{id}/quarantine",
            guarded(s, Action::QuarantineDevice, post(api::quarantine_device)),
        )
        .route(
            "/api/v1/devices/{id}/reactivate",
            guarded(s, Action::ReactivateDevice, post(api::reactivate_device)),
        )
        .route(
            "/api/v1/devices/{id}/revoke",
            guarded(s, Action::RevokeDevice, post(api::revoke_device)),
        )
        .route(
            "/api/v1/audit",
            guarded(s, Action::ReadAudit, get(api::recent_audit)),
        )
        .route(
            "/api/v1/audit/verify",
            guarded(s, Action::ReadAudit, get(api::verify_audit)),
        )
        .route(
            "/api/v1/tokens",
            guarded(s, Action::ListTokens, get(api::list_tokens)).merge(guarded(
                s,
                Action::CreateToken,
                post(api::create_token),
            )),
        )
        .route(
            "/api/v1/tokens/{id}",
            guarded(s, Action::RevokeToken, delete(api::revoke_token)),
        )
        .route(
            "/api/v1/access/review",
            guarded(s, Action::ReviewAccess, get(api::review_access)),
        )
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            state.config.max_concurrent_requests,
        ))
        .with_state(state)
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
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
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

/// Start the admin API of a running gateway (called by [`crate::app`]):
/// token store on the gateway database, TLS from `admin.tls_cert`/`tls_key`
/// or else the edge's server certificate, the shared registry, audit log and
/// metrics, stopped by the gateway's shutdown token and tracked by its task
/// tracker. Returns the bound address, or `None` when `admin.enabled` is off.
///
/// # Errors
/// [`AdminError`] if the configuration, certificate, database or address
/// cannot be used.
pub fn start(
    ctx: &Arc<crate::context::GatewayContext>,
    config: &AdminConfig,
    uplink: Option<crate::uplink::UplinkMonitor>,
) -> Result<Option<SocketAddr>, AdminError> {
    if !config.enabled {
        tracing::info!("admin API disabled (admin.enabled = false)");
        return Ok(None);
    }
    config.validate()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => load_tls(cert, key)?,
        _ => server_tls(
            ("edge.server_cert", &ctx.config.edge.server_cert),
            ("edge.server_key", &ctx.config.edge.server_key),
        )?,
    };
    let clock: Arc<dyn super::Clock> = Arc::new(super::SystemClock);
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
    );
    if let Some(uplink) = uplink {
        state = state.with_uplink(uplink);
    }
    let state = Arc::new(state);
    let server = AdminServer::start(state, tls, ctx.shutdown.clone())?;
    let addr = server.local_addr();
    ctx.tasks.spawn(server.wait());
    Ok(Some(addr))
}
