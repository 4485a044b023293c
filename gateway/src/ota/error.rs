//! The OTA agent's one error type, [`OtaError`], and the classification of
//! refused TUF refreshes, [`RefreshFailure`], that labels the
//! `wardgate_ota_refresh_total{outcome}` metric and the `ota.refresh` audit
//! rows.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::ConfigError;

/// Why a TUF refresh was refused. Every variant keeps the last good
/// metadata in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshFailure {
    /// A role's metadata has expired (a freeze attack, or a server that
    /// stopped re-signing its timestamp).
    Expired,
    /// The server offered older metadata than the gateway already trusts.
    Rollback,
    /// Metadata is not signed by the threshold of keys that should sign it
    /// (for a manufacturer: a key that is not delegated).
    BadSignature,
    /// Metadata does not match the length, hash or version another role
    /// lists for it, or does not parse.
    Tampered,
    /// A role lists a target outside the paths delegated to it.
    OutsideDelegation,
    /// The OTA server could not be reached, or a file is missing there.
    Unreachable,
    /// The system clock went back behind a time the client already saw.
    Clock,
    /// The pinned root (`ota.trusted_root`) is unusable.
    TrustedRoot,
    /// The local metadata directory could not be read or written.
    Storage,
    /// Anything else tough refused.
    Other,
}

impl RefreshFailure {
    /// The `outcome` label of `wardgate_ota_refresh_total` and the audit
    /// detail's `reason`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Rollback => "rollback",
            Self::BadSignature => "bad_signature",
            Self::Tampered => "tampered",
            Self::OutsideDelegation => "outside_delegation",
            Self::Unreachable => "unreachable",
            Self::Clock => "clock",
            Self::TrustedRoot => "trusted_root",
            Self::Storage => "storage",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for RefreshFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What went wrong in the OTA agent.
#[derive(Debug, thiserror::Error)]
pub enum OtaError {
    /// A TUF refresh was refused; the last good metadata stays in use.
    #[error("TUF metadata from {url} refused ({failure}): {message}")]
    Refresh {
        /// The metadata base URL.
        url: String,
        /// The class of failure.
        failure: RefreshFailure,
        /// What happened and what to do, in operator words.
        message: String,
        /// tough's own error, if it came from tough.
        #[source]
        source: Option<Box<tough::error::Error>>,
    },
    /// No verified metadata is loaded (first start without a successful
    /// refresh, or the stored metadata no longer verifies).
    #[error("no verified TUF metadata is loaded yet; wait for a successful refresh from `ota.server_url` (see the `ota.refresh` audit rows and `wardgate_ota_refresh_total`)")]
    NoMetadata,
    /// The loaded metadata has expired: no new rollout step may start.
    #[error("the verified TUF metadata expired at {expired_at}; no new rollout step starts until a refresh from `ota.server_url` succeeds (see the `ota.refresh` audit rows)")]
    NotFresh {
        /// When the first role expired.
        expired_at: chrono::DateTime<chrono::Utc>,
    },
    /// A target cannot be used.
    #[error("target {name}: {reason}")]
    Target {
        /// The target name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A file of the OTA data directory could not be read or written.
    #[error(
        "cannot {action} {path}: {source}; check permissions and free space of `storage.data_dir`"
    )]
    Storage {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTPS client for the OTA server could not be built.
    #[error("OTA server TLS setup failed: {reason}; check `ota.ca_cert`, `ota.client_cert` and `ota.client_key`")]
    Tls {
        /// What is wrong.
        reason: String,
        /// The underlying error.
        #[source]
        source: Option<tuf_repo::Error>,
    },
    /// The `[ota]` settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An image download stopped before the end; the partial file is kept.
    #[error("download of image {sha256} stopped after {received} of {length} bytes: {reason}; the partial file is kept and the next attempt resumes from there with an HTTP Range request")]
    Interrupted {
        /// The image's SHA-256.
        sha256: String,
        /// Bytes on disk so far.
        received: u64,
        /// The signed length.
        length: u64,
        /// What happened.
        reason: String,
        /// The HTTP error, if any.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The OTA server sent something other than the signed image.
    #[error("image {sha256} from {url} refused: {reason}")]
    ImageRefused {
        /// The image's SHA-256.
        sha256: String,
        /// Where it came from.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// A cached image no longer matches its SHA-256.
    #[error("cached image {sha256} is corrupt ({reason}); it was deleted and is downloaded again when next needed")]
    Tampered {
        /// The image's SHA-256.
        sha256: String,
        /// What was found.
        reason: String,
    },
    /// A blocking OTA task panicked or was cancelled.
    #[error("OTA background task failed: {0}")]
    Join(String),
}

impl OtaError {
    /// An [`OtaError::Storage`] for `path`.
    pub(crate) fn storage(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Storage {
            action,
            path,
            source,
        }
    }

    /// Runs the file work `f` on the blocking pool; a task that panicked or
    /// was cancelled is an [`OtaError::Join`]. The one way the TUF client,
    /// its metadata directory and the image cache leave the async runtime
    /// for the file system.
    pub(crate) async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, Self> + Send + 'static,
    ) -> Result<T, Self> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Self::Join(e.to_string()))?
    }

    /// The refresh failure class, if this is a refused refresh.
    #[must_use]
    pub fn refresh_failure(&self) -> Option<RefreshFailure> {
        match self {
            Self::Refresh { failure, .. } => Some(*failure),
            _ => None,
        }
    }
}
