//! The harness's one error type.
//!
//! A test that fails because its environment is incomplete (no Mosquitto,
//! no Python venv, a port that never opened) should say so in words and
//! name the fix, not panic with an `Option::unwrap` deep in a helper; so
//! every fallible harness function returns a [`HarnessError`] that keeps
//! its cause as `#[source]`.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while setting up or driving a test peer.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`write`, `create directory`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A loopback socket could not be bound or connected.
    #[error("{what}: {source}")]
    Network {
        /// What was being done, with the address.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// rcgen refused to build a test certificate.
    #[error("cannot make the test certificate ({what}): {source}")]
    Certificate {
        /// Which certificate or step.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// `wardgate-tls` refused the test TLS material.
    #[error("test TLS: {source}")]
    Tls {
        /// Its error, naming which part of the test material.
        #[source]
        source: wardgate_tls::TlsError,
    },
    /// A test certificate or key file could not be written.
    #[error("test key file: {source}")]
    KeyFile {
        /// `wardgate-tls`' error, with the path.
        #[source]
        source: wardgate_tls::KeyFileError,
    },
    /// A program the tests need is not installed.
    #[error("{} is missing; run scripts/setup-test-deps", program.display())]
    Missing {
        /// The program that was looked for.
        program: PathBuf,
    },
    /// A program could not be started.
    #[error("cannot start {program}: {source}; run scripts/setup-test-deps if it is missing")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A started program exited before it was ready.
    #[error("{program} exited with {status} before it was ready; its log:\n{log}")]
    Exited {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote, for the test output.
        log: String,
    },
    /// A started program or a peer did not become ready in time.
    #[error("{what} was not ready within {limit:?}; log:\n{log}")]
    NotReady {
        /// What was awaited (`mosquitto on port 4242`).
        what: String,
        /// How long the harness waited.
        limit: Duration,
        /// Its log, when there is one.
        log: String,
    },
    /// A program run to completion (a `tuf-repo` step, say) failed.
    #[error("{command} failed ({status}):\n{output}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote on stdout and stderr.
        output: String,
    },
    /// An HTTPS client for the test CA could not be built.
    #[error("cannot build the test HTTPS client: {source}")]
    Http {
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}

impl HarnessError {
    /// An [`HarnessError::Certificate`] for `what`.
    pub(crate) fn cert(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Self {
        let what = what.into();
        move |source| Self::Certificate { what, source }
    }
}

/// Names the file behind an I/O error: `fs::write(p, x).on("write", p)?`.
pub(crate) trait OnPath<T> {
    /// Turn the error into [`HarnessError::Io`] for `action` on `path`.
    fn on(self, action: &'static str, path: &std::path::Path) -> Result<T, HarnessError>;
}

impl<T> OnPath<T> for std::io::Result<T> {
    fn on(self, action: &'static str, path: &std::path::Path) -> Result<T, HarnessError> {
        self.map_err(|source| HarnessError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}
