//! The tough transports of the OTA agent.
//!
//! - [`https_transport`] builds `tuf_repo`'s [`HttpsTransport`] from the
//!   `[ota]` files: only the ward CA as trust anchor, the gateway's client
//!   certificate, a request timeout.
//! - [`RecordingTransport`] wraps any transport and keeps the exact bytes of
//!   every metadata file tough fetched, in order ([`FetchLog`]). tough parses
//!   and re-serialises what it verifies and does not hand the original bytes
//!   back, but devices verify the manufacturer's signature over the bytes as
//!   signed (`protocol::OtaOffer::targets_metadata`), and the local metadata
//!   directory keeps the files as served. The log is bounded
//!   ([`MAX_RECORDED_BYTES`]); past the bound the refresh is refused rather
//!   than growing without limit.
//! - [`LocalTransport`] serves the last good metadata set from disk to tough,
//!   mapping the versioned names tough asks for (`7.snapshot.json`) to the
//!   unversioned files kept there, so a restarted gateway re-verifies and
//!   uses its last good state before it can reach the server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tough::{async_trait, Transport, TransportError, TransportErrorKind, TransportStream};
use tuf_repo::{HttpsTransport, HttpsTransportConfig};
use url::Url;

use super::error::OtaError;
use crate::config::OtaConfig;

/// Most metadata bytes recorded during one refresh (all files together).
pub const MAX_RECORDED_BYTES: usize = 64 * 1024 * 1024;

/// Builds the HTTPS transport for the OTA server from `[ota]`.
///
/// # Errors
/// [`OtaError::Storage`] if a file cannot be read, [`OtaError::Tls`] if it
/// does not parse.
pub fn https_transport(config: &OtaConfig) -> Result<HttpsTransport, OtaError> {
    let read = |field: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| OtaError::Tls {
            reason: format!("`{field}` {} cannot be read: {e}", path.display()),
            source: None,
        })
    };
    let ca_pem = read("ota.ca_cert", &config.ca_cert)?;
    let cert = read("ota.client_cert", &config.client_cert)?;
    let key = read("ota.client_key", &config.client_key)?;
    HttpsTransport::new(&HttpsTransportConfig {
        ca_pem,
        client_identity: Some((cert, key)),
        timeout: Some(config.request_timeout),
    })
    .map_err(|e| OtaError::Tls {
        reason: e.to_string(),
        source: Some(e),
    })
}

/// A transport for plain `http://` repositories (test repositories such as
/// the TUF conformance suite's); it trusts no TLS server at all.
///
/// # Errors
/// [`OtaError::Tls`] if the HTTP client cannot be built.
pub fn plain_http_transport(timeout: Duration) -> Result<HttpsTransport, OtaError> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| OtaError::Tls {
            reason: format!("HTTP client: {e}"),
            source: None,
        })?;
    Ok(HttpsTransport::from_client(client))
}

/// One metadata file as tough fetched it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The file name requested (last URL segment, as tough encoded it),
    /// e.g. `7.snapshot.json` or `3.acme.json`.
    pub file: String,
    /// The exact bytes served.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct LogInner {
    files: Vec<Fetched>,
    bytes: usize,
    overflow: bool,
    last_requested: Option<String>,
}

/// The exact metadata bytes one load fetched, in order; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FetchLog {
    inner: Arc<Mutex<LogInner>>,
}

impl FetchLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        // A poisoned lock only means a recording stream panicked; the log
        // itself is a plain vector and still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn requested(&self, file: &str) {
        self.lock().last_requested = Some(file.to_owned());
    }

    fn record(&self, file: String, bytes: Vec<u8>) {
        let mut inner = self.lock();
        if inner.bytes.saturating_add(bytes.len()) > MAX_RECORDED_BYTES {
            inner.overflow = true;
            return;
        }
        inner.bytes += bytes.len();
        inner.files.push(Fetched { file, bytes });
    }

    /// Every completely fetched metadata file, in fetch order.
    #[must_use]
    pub fn files(&self) -> Vec<Fetched> {
        self.lock().files.clone()
    }

    /// The last metadata file tough asked for (the one a failure is about).
    #[must_use]
    pub fn last_requested(&self) -> Option<String> {
        self.lock().last_requested.clone()
    }

    /// Whether more than [`MAX_RECORDED_BYTES`] were fetched.
    #[must_use]
    pub fn overflowed(&self) -> bool {
        self.lock().overflow
    }
}

/// Wraps a transport and records the bytes of every file fetched below
/// `metadata_base` into a [`FetchLog`].
#[derive(Debug, Clone)]
pub struct RecordingTransport<T> {
    inner: T,
    metadata_base: String,
    log: FetchLog,
}

impl<T> RecordingTransport<T> {
    /// Records fetches of `metadata_base` (a directory URL) into `log`.
    pub fn new(inner: T, metadata_base: &Url, log: FetchLog) -> Self {
        Self {
            inner,
            metadata_base: metadata_base.as_str().to_owned(),
            log,
        }
    }
}

#[async_trait]
impl<T: Transport + Clone + 'static> Transport for RecordingTransport<T> {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let Some(file) = url
            .as_str()
            .strip_prefix(&self.metadata_base)
            .filter(|f| !f.is_empty() && !f.contains('/'))
            .map(str::to_owned)
        else {
            return self.inner.fetch(url).await;
        };
        self.log.requested(&file);
        let stream = self.inner.fetch(url).await?;
        let buffer = Arc::new(Mutex::new(Some(Vec::new())));
        let tee_buffer = Arc::clone(&buffer);
        let tee = stream.map(move |item| {
            let mut guard = tee_buffer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match (&item, guard.as_mut()) {
                (Ok(bytes), Some(buf)) if buf.len() + bytes.len() <= MAX_RECORDED_BYTES => {
                    buf.extend_from_slice(bytes);
                }
                _ => *guard = None,
            }
            item
        });
        let log = self.log.clone();
        // Runs once the inner stream has ended without error: the body is
        // complete, record it.
        let done = futures::stream::once(async move {
            let body = buffer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(body) = body {
                log.record(file, body);
            }
        })
        .filter_map(|()| futures::future::ready(None));
        Ok(Box::pin(tee.chain(done)))
    }
}

/// Serves a directory of unversioned metadata files to tough as if it were
/// the repository: `N.snapshot.json` is answered with `snapshot.json` (tough
/// checks the version), `N.root.json` is never found (the directory's
/// `root.json` is the trusted root already).
#[derive(Debug, Clone)]
pub struct LocalTransport {
    dir: PathBuf,
}

impl LocalTransport {
    /// Serves the files in `dir`.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn resolve(&self, file: &str) -> Option<PathBuf> {
        if file.ends_with(".root.json") || file.contains('/') || file.starts_with('.') {
            return None;
        }
        let direct = self.dir.join(file);
        if direct.is_file() {
            return Some(direct);
        }
        let (version, rest) = file.split_once('.')?;
        if version.is_empty()
            || !version.bytes().all(|b| b.is_ascii_digit())
            || rest.starts_with('.')
        {
            return None;
        }
        let unversioned = self.dir.join(rest);
        unversioned.is_file().then_some(unversioned)
    }
}

#[async_trait]
impl Transport for LocalTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let file = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_owned();
        let Some(path) = self.resolve(&file) else {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        };
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            TransportError::new_with_cause(TransportErrorKind::Other, url.as_str(), e)
        })?;
        Ok(Box::pin(futures::stream::once(async move {
            Ok(bytes::Bytes::from(bytes))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tough::IntoVec;

    #[tokio::test]
    async fn records_exact_bytes_of_metadata_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("metadata")).unwrap();
        std::fs::create_dir_all(dir.path().join("targets")).unwrap();
        std::fs::write(dir.path().join("metadata/timestamp.json"), b" {\"x\": 1} ").unwrap();
        std::fs::write(dir.path().join("targets/a.bin"), b"image").unwrap();
        let base = Url::from_directory_path(dir.path()).unwrap();
        let meta = base.join("metadata/").unwrap();
        let log = FetchLog::default();
        let t = RecordingTransport::new(tough::FilesystemTransport, &meta, log.clone());
        let body = t
            .fetch(meta.join("timestamp.json").unwrap())
            .await
            .unwrap()
            .into_vec()
            .await
            .unwrap();
        assert_eq!(body, b" {\"x\": 1} ");
        t.fetch(base.join("targets/a.bin").unwrap())
            .await
            .unwrap()
            .into_vec()
            .await
            .unwrap();
        let files = log.files();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].file, "timestamp.json");
        assert_eq!(files[0].bytes, b" {\"x\": 1} ");
        assert_eq!(log.last_requested().as_deref(), Some("timestamp.json"));
        assert!(t.fetch(meta.join("missing.json").unwrap()).await.is_err());
        assert_eq!(log.files().len(), 1);
    }

    #[tokio::test]
    async fn local_transport_maps_versioned_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snapshot.json"), b"snap").unwrap();
        std::fs::write(dir.path().join("acme.json"), b"acme").unwrap();
        std::fs::write(dir.path().join("timestamp.json"), b"ts").unwrap();
        std::fs::write(dir.path().join("root.json"), b"root").unwrap();
        let t = LocalTransport::new(dir.path());
        let base = Url::from_directory_path(dir.path()).unwrap();
        let get = |f: &str| {
            let t = t.clone();
            let u = base.join(f).unwrap();
            async move { t.fetch(u).await.ok()?.into_vec().await.ok() }
        };
        assert_eq!(get("7.snapshot.json").await.unwrap(), b"snap");
        assert_eq!(get("3.acme.json").await.unwrap(), b"acme");
        assert_eq!(get("timestamp.json").await.unwrap(), b"ts");
        assert!(get("2.root.json").await.is_none());
        assert!(get("x.acme.json").await.is_none());
        assert!(get("4.globex.json").await.is_none());
    }
}
