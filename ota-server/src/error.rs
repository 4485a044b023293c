//! The crate-level error: what can stop the server from starting or running.

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
    /// TLS material could not be loaded (the error names the `tls.*` field,
    /// the file and what to do).
    #[error("TLS {0}")]
    Tls(#[from] wardgate_tls::TlsError),
    /// Socket or file failure.
    #[error("{action}: {source}")]
    Io {
        /// What was attempted.
        action: String,
        /// The error.
        source: std::io::Error,
    },
}
