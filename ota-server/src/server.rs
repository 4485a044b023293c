//! Wiring and the HTTPS accept loop.
//!
//! [`start`] opens the database and repository, reconciles the release table
//! with the published metadata, binds the listener, and spawns two tasks
//! under one [`CancellationToken`]: the accept loop (TLS handshake under
//! `limits.header_timeout`, at most `limits.max_connections` connections,
//! HTTP/1.1 and HTTP/2 via hyper with bounded header buffers) and the
//! timestamp [`crate::refresher`]. Each connection carries the gateway
//! identity from its verified client certificate and the peer's address
//! (`ConnectInfo<SocketAddr>`) as request extensions; the router is wrapped
//! in the per-peer request limit of [`crate::peer_limit`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::auth::{gateway_from_cert, PeerIdentity, Tokens};
use crate::config::{LimitsConfig, ValidConfig};
use crate::db::Db;
use crate::error::Error;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::peer_limit::{self, PeerLimit};
use crate::repo::{Expiries, OnlineKeys, Repository};

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    refresh: CancellationToken,
    state: Arc<AppState>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shared state (for in-process tests and the export command).
    #[must_use]
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops only the timestamp refresher (used to show what clients see
    /// when a timestamp is no longer refreshed).
    pub fn stop_timestamp_refresh(&self) {
        self.refresh.cancel();
    }

    /// Asks everything to stop and waits for it.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the shutdown token is cancelled and every task ended.
    pub async fn wait(self) {
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "server task failed");
            }
        }
    }
}

/// Opens the repository with the configured online keys.
///
/// # Errors
/// [`Error::Repo`] when keys or repository are unusable.
pub fn open_repository(cfg: &ValidConfig) -> Result<Repository, Error> {
    let keys = OnlineKeys::load(&cfg.tuf.snapshot_key, &cfg.tuf.timestamp_key)?;
    Ok(Repository::open(
        &Repository::dir_in(&cfg.data_dir),
        keys,
        expiries(cfg),
    )?)
}

/// The configured metadata lifetimes.
#[must_use]
pub fn expiries(cfg: &ValidConfig) -> Expiries {
    Expiries {
        snapshot: cfg.tuf.snapshot_expiry,
        timestamp: cfg.tuf.timestamp_expiry,
    }
}

/// Makes the `releases` table list exactly what the repository publishes
/// (a crash between the metadata swap and the insert loses nothing).
async fn reconcile_releases(db: &Db, repo: &Repository) -> Result<(), Error> {
    let s = repo.state();
    let rows: Vec<(String, String, u64, String, u64)> = s
        .published
        .iter()
        .map(|(p, t)| {
            (
                p.to_string(),
                p.manufacturer().to_string(),
                t.length,
                t.sha256.clone(),
                t.role_version,
            )
        })
        .collect();
    let snap = s.snapshot.signed.version.get();
    db.call(move |c| {
        let tx = c.transaction()?;
        for (target, m, len, sha, rv) in rows {
            tx.execute(
                "INSERT OR IGNORE INTO releases (target, manufacturer, length, sha256, role_version, snapshot_version, published_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    target,
                    m,
                    i64::try_from(len).unwrap_or(i64::MAX),
                    sha,
                    i64::try_from(rv).unwrap_or(i64::MAX),
                    i64::try_from(snap).unwrap_or(i64::MAX),
                    crate::db::now_rfc3339()
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// Starts the server; it runs until `shutdown` is cancelled.
///
/// # Errors
/// [`Error`] when anything needed at start-up is missing or invalid.
pub async fn start(cfg: ValidConfig, shutdown: CancellationToken) -> Result<RunningServer, Error> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| Error::Io {
        action: format!("creating data_dir {}", cfg.data_dir.display()),
        source,
    })?;
    let tls = crate::tls::server_config(&cfg.tls)?;
    let repo = Arc::new(open_repository(&cfg)?);
    let db = Db::open(&cfg.data_dir.join("ota.db"))?;
    reconcile_releases(&db, &repo).await?;
    let metrics = Arc::new(Metrics::new());
    metrics
        .timestamp_expiry_seconds
        .set(repo.state().timestamp_expires().as_second());
    let state = Arc::new(AppState {
        repo: Arc::clone(&repo),
        db,
        tokens: Tokens::from_config(&cfg),
        metrics: Arc::clone(&metrics),
        limits: cfg.limits.clone(),
    });
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| Error::Io {
            action: format!("binding {} (config field `listen`)", cfg.listen),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        action: "reading the bound address".into(),
        source,
    })?;
    tracing::info!(%addr, generation = repo.state().generation, "ota-server listening");
    let refresh = shutdown.child_token();
    // Outermost, so a client over its limit costs no authentication, no
    // database work and no audit row.
    let limit = Arc::new(PeerLimit::new(&cfg.limits, Arc::clone(&metrics)));
    let app = crate::http::router(Arc::clone(&state)).layer(axum::middleware::from_fn_with_state(
        limit,
        peer_limit::limit,
    ));
    let accept = tokio::spawn(accept_loop(
        listener,
        TlsAcceptor::from(tls),
        app,
        cfg.limits.clone(),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    let refresher = tokio::spawn(crate::refresher::run(
        repo,
        metrics,
        cfg.tuf.timestamp_refresh,
        refresh.clone(),
    ));
    Ok(RunningServer {
        addr,
        shutdown,
        refresh,
        state,
        tasks: vec![accept, refresher],
    })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: axum::Router,
    limits: LimitsConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let handshake_timeout = limits.header_timeout;
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    metrics.tls_handshake_failures.inc();
                    let error = wardgate_tls::describe::handshake_error(&e, &crate::tls::HANDSHAKE);
                    tracing::warn!(%peer, %error, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    metrics.tls_handshake_failures.inc();
                    tracing::warn!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let identity = PeerIdentity {
                gateway: tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| gateway_from_cert(c)),
            };
            let svc =
                app.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(identity.clone());
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10s; closing them");
    }
    tracing::info!("accept loop stopped");
}
