//! The crate-level error: what can stop the server from starting or running.

use std::path::PathBuf;

/// Start-up and run-time failures of the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    /// TLS material could not be loaded.
    #[error("TLS {field} ({path}): {reason}")]
    Tls {
        /// Config field.
        field: &'static str,
        /// File.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Socket or file failure.
    #[error("{action}: {source}")]
    Io {
        /// What was attempted.
        action: String,
        /// The error.
        source: std::io::Error,
    },
}
