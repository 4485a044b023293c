//! [`GatewayContext`]: what every component of a running gateway shares,
//! built once from the validated configuration.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;
use crate::config::{ConfigError, IntoValidConfig, ValidConfig};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Shared state of one running gateway. Components take an
/// `Arc<GatewayContext>`, open their own database connection from
/// [`GatewayContext::db_path`] if they need one, register their metrics in
/// [`GatewayContext::metrics`], and stop when [`GatewayContext::shutdown`] is
/// cancelled.
#[derive(Debug)]
pub struct GatewayContext {
    /// The validated configuration; components read their section here.
    pub config: Arc<ValidConfig>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The gateway database file.
    pub db_path: PathBuf,
    /// The device registry (its change channel reaches live edge sessions).
    pub registry: Registry,
    /// The audit log.
    pub audit: AuditLog,
    /// The shared Prometheus registry.
    pub metrics: Metrics,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
    /// Long-running tasks of all components; shutdown waits for them.
    pub tasks: TaskTracker,
    /// Recent readings and live sessions per device, for the console.
    pub recent: crate::console::RecentActivity,
}

/// Why the context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("cannot create data dir {path}: {source}; check `storage.data_dir`")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The registry could not be opened.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

impl GatewayContext {
    /// Create the data dir (mode 0700), open the database, registry and
    /// audit log. A [`ValidConfig`] is used as it is; a plain
    /// [`crate::config::Config`] is validated here first.
    ///
    /// # Errors
    /// [`ContextError`] if the configuration is refused or the directory or
    /// database cannot be set up.
    pub fn open(config: impl IntoValidConfig) -> Result<Arc<Self>, ContextError> {
        let config = config.into_valid()?;
        let data_dir = config.storage.data_dir.clone();
        create_private_dir(&data_dir)?;
        let db_path = config.storage.db_path();
        let registry = Registry::open(&db_path)?;
        let audit = AuditLog::open(&db_path)?;
        Ok(Arc::new(Self {
            config: Arc::new(config),
            data_dir,
            db_path,
            registry,
            audit,
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            recent: crate::console::RecentActivity::new(),
        }))
    }
}

/// Create `path` (and parents) and restrict it to the owner (0700).
///
/// # Errors
/// [`ContextError::DataDir`] if it cannot be created.
pub fn create_private_dir(path: &std::path::Path) -> Result<(), ContextError> {
    let err = |source| ContextError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    wardgate_tls::keyfile::create_private_dir(path).map_err(err)
}
