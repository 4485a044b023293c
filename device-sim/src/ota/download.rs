//! Resumable image download over HTTPS with mutual TLS into the idle slot.
//!
//! The device fetches the image from the gateway's image server with its
//! own certificate and trusts only the ward CA (the caller's
//! `rustls::ClientConfig`). Bytes go straight into the idle slot's file and
//! progress is checkpointed in the state folder. After an interruption
//! (connection dropped, or the process killed and restarted) the download
//! continues from the bytes already in the slot file with
//! `Range: bytes=<n>-` and `If-Range: <ETag>`: a server whose image changed
//! answers with the whole new image (`200`), which restarts the slot from
//! byte 0. The server is not trusted: it may send at most the signed number
//! of bytes, and the slot is checked against the signed length and SHA-256
//! afterwards ([`crate::ota::slot::check_slot_file`]).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use reqwest::StatusCode;
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use wardgate_protocol::ContentRange;

use crate::ota::error::OtaError;
use crate::ota::faults::Faults;
use crate::ota::nvram::{Nvram, PendingUpdate};
use crate::ota::slot::Slot;

/// Bytes between two checkpoints (`fsync` of the slot, progress in NVRAM).
pub const CHECKPOINT_BYTES: u64 = 1024 * 1024;

/// Timeouts and retries of image downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadSettings {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response.
    pub read_timeout: Duration,
    /// Attempts in a row that bring no new bytes before the download is
    /// given up (it resumes when offered again).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time up to 5 s.
    pub retry_delay: Duration,
    /// How long in total to keep asking a busy image server (HTTP 429 or
    /// 503, for example at its limit of concurrent downloads); its
    /// `Retry-After` is honoured (default 1 s, at most 30 s per wait).
    pub busy_timeout: Duration,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_attempts: 5,
            retry_delay: Duration::from_millis(200),
            busy_timeout: Duration::from_secs(600),
        }
    }
}

/// Why a download did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The image server answered with a refusal (4xx): the image was not
    /// offered to this device, or is gone.
    #[error("the gateway's image server refused the download with HTTP {status}")]
    Refused {
        /// HTTP status.
        status: u16,
    },
    /// The server stayed busy (429/503) longer than `busy_timeout`.
    #[error("the image server stayed busy for {waited_s} s (HTTP {status})")]
    Busy {
        /// The last busy status.
        status: u16,
        /// Seconds waited in total.
        waited_s: u64,
    },
    /// No new bytes after several attempts.
    #[error("the image server could not be reached or kept failing ({attempts} attempts without progress): {reason}")]
    Unreachable {
        /// Attempts in a row without progress.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The server sent more than the signed length.
    #[error("the image server sent more than the signed {length} bytes")]
    TooLong {
        /// The signed length.
        length: u64,
    },
    /// The slot file could not be written.
    #[error("cannot write slot file {path}: {source}")]
    Slot {
        /// The slot file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The progress could not be recorded, or the device lost power.
    #[error(transparent)]
    Device(#[from] OtaError),
}

/// What a completed download looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    /// Byte offset the first request of this call started from (non-zero
    /// when it continued a download interrupted before).
    pub started_at: u64,
    /// Requests made, including resumptions.
    pub requests: u32,
    /// Image bytes received over the network by this call, across all its
    /// requests (what the image server actually sent this device).
    pub received: u64,
}

/// The HTTPS client of a device for image downloads.
#[derive(Debug, Clone)]
pub struct Downloader {
    http: reqwest::Client,
    settings: DownloadSettings,
}

fn slot_err(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Slot {
        path: path.to_path_buf(),
        source,
    }
}

enum Attempt {
    /// The slot holds the whole image.
    Complete,
    /// Interrupted; retry (made progress or not).
    Retry { progressed: bool, reason: String },
    /// The server is busy; ask again after the wait.
    Busy { status: u16, wait: Duration },
}

/// `Retry-After` in seconds (the HTTP-date form falls back to 1 s), capped
/// at 30 s.
fn retry_after(resp: &reqwest::Response) -> Duration {
    let secs = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(secs.clamp(1, 30))
}

impl Downloader {
    /// A client presenting the device certificate and trusting only the CA
    /// in `tls`. Redirects are not followed.
    ///
    /// # Errors
    /// [`OtaError::HttpClient`] if reqwest refuses the configuration.
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        settings: DownloadSettings,
    ) -> Result<Self, OtaError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .build()
            .map_err(|source| OtaError::HttpClient { source })?;
        Ok(Self { http, settings })
    }

    /// Download the image of the pending update recorded in `nvram` into
    /// its slot, continuing from the bytes already there.
    ///
    /// # Errors
    /// See [`DownloadError`]; a power loss (fault switch) is
    /// [`DownloadError::Device`] with [`OtaError::PowerLoss`].
    pub async fn download(
        &self,
        nvram: &mut Nvram,
        faults: &Faults,
    ) -> Result<Downloaded, DownloadError> {
        let pending = pending_update(nvram, "download started without a pending update")?;
        let path = nvram.slot_path(pending.slot);
        let started_at = slot_len(&path).await?.min(pending.length);
        let mut requests = 0;
        let mut received = 0;
        let mut fruitless = 0;
        let mut delay = self.settings.retry_delay;
        let mut busy = Duration::ZERO;
        loop {
            requests += 1;
            match self.attempt(nvram, faults, &path, &mut received).await? {
                Attempt::Busy { status, wait } => {
                    if busy >= self.settings.busy_timeout {
                        return Err(DownloadError::Busy {
                            status,
                            waited_s: busy.as_secs(),
                        });
                    }
                    tracing::info!(
                        status,
                        wait_ms = wait.as_millis(),
                        "image server busy; waiting"
                    );
                    tokio::time::sleep(wait).await;
                    busy += wait;
                }
                Attempt::Complete => {
                    return Ok(Downloaded {
                        started_at,
                        requests,
                        received,
                    })
                }
                Attempt::Retry { progressed, reason } => {
                    fruitless = if progressed { 1 } else { fruitless + 1 };
                    if fruitless >= self.settings.max_attempts {
                        return Err(DownloadError::Unreachable {
                            attempts: fruitless,
                            reason,
                        });
                    }
                    tracing::info!(%reason, retry_in_ms = delay.as_millis(), "image download interrupted; resuming");
                    tokio::time::sleep(delay).await;
                    if !progressed {
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// One request: resume from the slot file's length, write what comes,
    /// and add what came over the network to `received`.
    async fn attempt(
        &self,
        nvram: &mut Nvram,
        faults: &Faults,
        path: &Path,
        received: &mut u64,
    ) -> Result<Attempt, DownloadError> {
        let pending = pending_update(nvram, "the pending update vanished during its download")?;
        let length = pending.length;
        let mut offset = slot_len(path).await?;
        if offset > length {
            truncate(path).await?;
            offset = 0;
        }
        if offset == length {
            checkpoint(nvram, length, pending.etag.clone(), pending.resumed).await?;
            return Ok(Attempt::Complete);
        }
        let mut req = self.http.get(&pending.download_url);
        if offset > 0 {
            req = req.header(RANGE, format!("bytes={offset}-"));
            if let Some(etag) = &pending.etag {
                req = req.header(IF_RANGE, etag);
            }
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(Attempt::Retry {
                    progressed: false,
                    reason: error_chain(&e),
                })
            }
        };
        let status = resp.status();
        let etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut pos = match status {
            StatusCode::PARTIAL_CONTENT => {
                let range = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(ContentRange::parse);
                match range {
                    Some(r) if r.continues(offset, length) => offset,
                    _ => {
                        // Not the range asked for.
                        return start_over(
                            nvram,
                            path,
                            "the server answered with another byte range than requested",
                        )
                        .await;
                    }
                }
            }
            StatusCode::OK => {
                if offset > 0 {
                    tracing::info!(
                        offset,
                        "image server sent the whole image instead of the rest (the image changed, or Range is not supported); restarting from byte 0"
                    );
                }
                0
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                return start_over(
                    nvram,
                    path,
                    "the server could not serve the rest of the image (HTTP 416)",
                )
                .await;
            }
            s @ (StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) => {
                return Ok(Attempt::Busy {
                    status: s.as_u16(),
                    wait: retry_after(&resp),
                })
            }
            s if s.is_client_error() => return Err(DownloadError::Refused { status: s.as_u16() }),
            s => {
                return Ok(Attempt::Retry {
                    progressed: false,
                    reason: format!("the image server answered HTTP {}", s.as_u16()),
                })
            }
        };
        // Only a 206 continues from a non-zero offset.
        let resumed = pos > 0;
        let mut file = open_slot(path, false).await?;
        file.set_len(pos).await.map_err(slot_err(path))?;
        file.seek(SeekFrom::Start(pos))
            .await
            .map_err(slot_err(path))?;
        checkpoint(nvram, pos, etag.clone(), resumed).await?;
        let begun = pos;
        let mut since_checkpoint = 0u64;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    file.sync_data().await.map_err(slot_err(path))?;
                    checkpoint(nvram, pos, etag, resumed).await?;
                    return Ok(Attempt::Retry {
                        progressed: pos > begun,
                        reason: error_chain(&e),
                    });
                }
            };
            let n = chunk.len() as u64;
            *received += n;
            if pos + n > length {
                let keep = usize::try_from(length - pos).unwrap_or(0);
                file.write_all(&chunk[..keep])
                    .await
                    .map_err(slot_err(path))?;
                file.sync_data().await.map_err(slot_err(path))?;
                return Err(DownloadError::TooLong { length });
            }
            if let Some(mark) = faults.power_loss_after {
                if pos < mark && pos + n >= mark {
                    let keep = usize::try_from(mark - pos).unwrap_or(0);
                    file.write_all(&chunk[..keep])
                        .await
                        .map_err(slot_err(path))?;
                    // Bytes handed to the OS survive a process kill; what the
                    // state file says lags behind, as on a real power cut.
                    file.flush().await.map_err(slot_err(path))?;
                    return Err(OtaError::PowerLoss {
                        bytes: mark,
                        slot: pending.slot,
                    }
                    .into());
                }
            }
            file.write_all(&chunk).await.map_err(slot_err(path))?;
            pos += n;
            since_checkpoint += n;
            if since_checkpoint >= CHECKPOINT_BYTES {
                since_checkpoint = 0;
                file.sync_data().await.map_err(slot_err(path))?;
                checkpoint(nvram, pos, etag.clone(), resumed).await?;
            }
        }
        file.sync_data().await.map_err(slot_err(path))?;
        checkpoint(nvram, pos, etag, resumed).await?;
        if pos == length {
            Ok(Attempt::Complete)
        } else {
            Ok(Attempt::Retry {
                progressed: pos > begun,
                reason: format!("the response ended after {pos} of {length} bytes"),
            })
        }
    }
}

/// Every message in an error's source chain, joined (reqwest hides the
/// useful part, e.g. a TLS refusal, in a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = inner.source();
    }
    s
}

async fn slot_len(path: &Path) -> Result<u64, DownloadError> {
    match tokio::fs::metadata(path).await {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(slot_err(path)(e)),
    }
}

/// Open (or create) the slot file at `path` for writing, emptied if
/// `truncate`.
async fn open_slot(path: &Path, truncate: bool) -> Result<tokio::fs::File, DownloadError> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .await
        .map_err(slot_err(path))
}

async fn truncate(path: &Path) -> Result<(), DownloadError> {
    let f = open_slot(path, true).await?;
    f.sync_all().await.map_err(slot_err(path))?;
    Ok(())
}

/// Erase a slot's image file (after a refused image).
///
/// # Errors
/// [`DownloadError::Slot`] if it cannot be truncated.
pub async fn erase_slot(nvram: &Nvram, slot: Slot) -> Result<(), DownloadError> {
    truncate(&nvram.slot_path(slot)).await
}

/// The pending update in `nvram`; its absence is a state fault, described
/// by `missing`.
fn pending_update(nvram: &Nvram, missing: &str) -> Result<PendingUpdate, DownloadError> {
    nvram.state().pending.clone().ok_or_else(|| {
        OtaError::StateInvalid {
            path: nvram.dir().to_path_buf(),
            reason: missing.into(),
        }
        .into()
    })
}

/// The server answered something the bytes in the slot cannot be continued
/// from: empty the slot, reset the progress and retry from byte 0 (`reason`
/// is logged with the retry).
async fn start_over(
    nvram: &mut Nvram,
    path: &Path,
    reason: &str,
) -> Result<Attempt, DownloadError> {
    truncate(path).await?;
    checkpoint(nvram, 0, None, false).await?;
    Ok(Attempt::Retry {
        progressed: false,
        reason: reason.into(),
    })
}

async fn checkpoint(
    nvram: &mut Nvram,
    bytes: u64,
    etag: Option<String>,
    resumed: bool,
) -> Result<(), DownloadError> {
    nvram
        .update(|s| {
            if let Some(p) = s.pending.as_mut() {
                p.bytes_downloaded = bytes;
                p.etag = etag;
                p.resumed = resumed;
            }
        })
        .await?;
    Ok(())
}
