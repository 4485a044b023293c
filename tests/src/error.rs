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
    /// PEM text held no usable certificate or key.
    #[error("no {expected} in the PEM given for {what}")]
    Pem {
        /// Whose PEM it was.
        what: &'static str,
        /// What was looked for (`CERTIFICATE block`, `PRIVATE KEY block`).
        expected: &'static str,
    },
    /// rustls refused a test TLS configuration or handshake.
    #[error("cannot build the test TLS configuration ({what}): {source}")]
    Tls {
        /// Which part.
        what: &'static str,
        /// rustls's error.
        #[source]
        source: rustls::Error,
    },
    /// A test server could not be told to require client certificates.
    #[error("cannot require client certificates from the test CA: {source}")]
    ClientVerifier {
        /// rustls's error.
        #[source]
        source: rustls::server::VerifierBuilderError,
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
    /// An HTTPS client for the test CA could not be built.
    #[error("cannot build the test HTTPS client: {source}")]
    Http {
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}

impl HarnessError {
    /// An [`HarnessError::Io`] for `action` on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// An [`HarnessError::Certificate`] for `what`.
    pub(crate) fn cert(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Self {
        let what = what.into();
        move |source| Self::Certificate { what, source }
    }
}
