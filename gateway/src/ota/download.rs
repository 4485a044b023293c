//! Verified, resumable download of one TUF target.
//!
//! tough's `Repository::read_target` cannot resume: its `Transport` only
//! takes a URL (no `Range`), and it hashes the stream from byte 0. So images
//! are downloaded here with the same HTTP client as tough's transport
//! (`tuf_repo::HttpsTransport::client`: ward CA, gateway certificate), and
//! checked against the TUF target entry tough verified: never more than the
//! signed length is accepted, and the SHA-256 of the whole file must equal
//! the signed one before the file is handed on.
//!
//! Bytes go to a partial file that survives interruptions and restarts. The
//! next attempt hashes what is already there and asks for the rest with
//! `Range: bytes=<n>-`; a server that ignores the range (200) restarts the
//! file, and a `Content-Range` that does not start at `<n>` is refused. The
//! URL names the image by its SHA-256 (consistent snapshots), so no
//! `If-Range` validator is needed: a resumed file that ends with the wrong
//! hash is deleted and downloaded once more from the start.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;
use wardgate_protocol::ContentRange;

use super::error::OtaError;

/// What to download and what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Where the repository serves it.
    pub url: Url,
    /// The signed length.
    pub length: u64,
    /// The signed SHA-256, lowercase hex.
    pub sha256: String,
}

/// How a download went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes that were already on disk when it started (0: from scratch).
    pub resumed_from: u64,
    /// Bytes received from the server.
    pub received: u64,
}

const CHUNK: usize = 64 * 1024;

fn refused(expected: &Expected, reason: impl Into<String>) -> OtaError {
    OtaError::ImageRefused {
        sha256: expected.sha256.clone(),
        url: expected.url.to_string(),
        reason: reason.into(),
    }
}

async fn remove_partial(partial: &Path) -> Result<(), OtaError> {
    match tokio::fs::remove_file(partial).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OtaError::storage("remove", partial)(e)),
    }
}

/// Hashes the first `len` bytes of `path`.
async fn hash_prefix(path: &Path, len: u64) -> Result<Sha256, OtaError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(OtaError::storage("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let n = file
            .read(&mut buf[..want])
            .await
            .map_err(OtaError::storage("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hasher)
}

/// SHA-256 (hex) and length of a whole file.
///
/// # Errors
/// [`OtaError::Storage`] if it cannot be read.
pub async fn hash_file(path: &Path) -> Result<(String, u64), OtaError> {
    let len = tokio::fs::metadata(path)
        .await
        .map_err(OtaError::storage("stat", path))?
        .len();
    let hasher = hash_prefix(path, len).await?;
    Ok((hex::encode(hasher.finalize()), len))
}

/// Downloads `expected` into `partial`, resuming what is there. On `Ok` the
/// file is complete, fsynced and matches the signed length and SHA-256.
///
/// # Errors
/// [`OtaError::Interrupted`] if the transfer stopped early (the partial file
/// is kept for the next attempt); [`OtaError::ImageRefused`] if the server
/// sent something else than the signed image (the partial file is deleted);
/// [`OtaError::Storage`] on a local file failure.
pub async fn download(
    client: &reqwest::Client,
    expected: &Expected,
    partial: &Path,
    timeout: Duration,
) -> Result<Downloaded, OtaError> {
    match attempt(client, expected, partial, timeout).await {
        Err(Mismatch::Resumed) => {
            // What was on disk before was not the start of this image.
            tracing::warn!(sha256 = %expected.sha256, "resumed image did not verify; downloading it again from the start");
            remove_partial(partial).await?;
            attempt(client, expected, partial, timeout)
                .await
                .map_err(|m| m.into_error(expected))
        }
        other => other.map_err(|m| m.into_error(expected)),
    }
}

enum Mismatch {
    /// The hash did not match after resuming from existing bytes.
    Resumed,
    /// Any other failure.
    Failed(OtaError),
}

impl From<OtaError> for Mismatch {
    fn from(e: OtaError) -> Self {
        Self::Failed(e)
    }
}

impl Mismatch {
    fn into_error(self, expected: &Expected) -> OtaError {
        match self {
            Self::Resumed => refused(
                expected,
                "the SHA-256 of the downloaded image differs from the signed one",
            ),
            Self::Failed(e) => e,
        }
    }
}

#[allow(clippy::too_many_lines)]
async fn attempt(
    client: &reqwest::Client,
    expected: &Expected,
    partial: &Path,
    timeout: Duration,
) -> Result<Downloaded, Mismatch> {
    let interrupted =
        |received: u64, reason: String, source: Option<reqwest::Error>| OtaError::Interrupted {
            sha256: expected.sha256.clone(),
            received,
            length: expected.length,
            reason,
            source,
        };
    let mut offset = match tokio::fs::metadata(partial).await {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(OtaError::storage("stat", partial)(e).into()),
    };
    if offset > expected.length {
        remove_partial(partial).await?;
        offset = 0;
    }
    let resumed_from = offset;
    let mut hasher = if offset > 0 {
        hash_prefix(partial, offset).await?
    } else {
        Sha256::new()
    };
    let mut received = 0u64;
    if offset < expected.length {
        let mut request = client.get(expected.url.clone()).timeout(timeout);
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| interrupted(offset, format!("request failed: {e}"), Some(e)))?;
        let status = response.status();
        let append = if status == reqwest::StatusCode::PARTIAL_CONTENT && offset > 0 {
            let range = response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(ContentRange::parse);
            match range {
                Some(r) if r.continues(offset, expected.length) => true,
                _ => {
                    remove_partial(partial).await?;
                    return Err(refused(
                        expected,
                        format!("asked for bytes {offset}- and got a Content-Range that does not match; the partial file was deleted"),
                    )
                    .into());
                }
            }
        } else if status == reqwest::StatusCode::OK {
            if offset > 0 {
                tracing::info!(sha256 = %expected.sha256, offset, "server ignored the Range request; downloading from the start");
            }
            false
        } else if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            remove_partial(partial).await?;
            return Err(interrupted(
                0,
                "the server refused the resume range (416); the partial file was deleted".into(),
                None,
            )
            .into());
        } else if status == reqwest::StatusCode::NOT_FOUND {
            return Err(refused(expected, "the OTA server does not have this image (404); check that the release is published").into());
        } else {
            return Err(interrupted(
                offset,
                format!("the OTA server answered HTTP {status}"),
                None,
            )
            .into());
        };
        if !append {
            offset = 0;
            hasher = Sha256::new();
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(partial)
            .await
            .map_err(OtaError::storage("open", partial))?;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    file.flush()
                        .await
                        .map_err(OtaError::storage("write", partial))?;
                    return Err(interrupted(
                        offset,
                        format!("the transfer broke off: {e}"),
                        Some(e),
                    )
                    .into());
                }
            };
            let len = chunk.len() as u64;
            if offset + len > expected.length {
                drop(file);
                remove_partial(partial).await?;
                return Err(refused(
                    expected,
                    format!("the server sent more than the signed {} bytes; the partial file was deleted", expected.length),
                )
                .into());
            }
            file.write_all(&chunk)
                .await
                .map_err(OtaError::storage("write", partial))?;
            hasher.update(&chunk);
            offset += len;
            received += len;
        }
        file.sync_all()
            .await
            .map_err(OtaError::storage("sync", partial))?;
        if offset < expected.length {
            return Err(
                interrupted(offset, "the server closed the transfer early".into(), None).into(),
            );
        }
    }
    if hex::encode(hasher.finalize()) != expected.sha256 {
        if resumed_from > 0 {
            return Err(Mismatch::Resumed);
        }
        remove_partial(partial).await?;
        return Err(refused(
            expected,
            "the SHA-256 of the downloaded image differs from the signed one (tampered on the server or in transit); the file was deleted",
        )
        .into());
    }
    Ok(Downloaded {
        resumed_from,
        received,
    })
}

/// The file name a target is stored under in a flat directory: the target
/// path percent-encoded as python-tuf does (`a/b.bin` -> `a%2Fb.bin`).
#[must_use]
pub fn local_file_name(target: &str) -> String {
    let mut out = String::with_capacity(target.len());
    for b in target.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out == "." || out == ".." {
        return out.replace('.', "%2E");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_are_flat() {
        assert_eq!(local_file_name("acme/pump-1.0.bin"), "acme%2Fpump-1.0.bin");
        assert_eq!(local_file_name("../x"), "..%2Fx");
        assert_eq!(local_file_name("a b"), "a%20b");
        assert_eq!(local_file_name(".."), "%2E%2E");
    }

    #[tokio::test]
    async fn hashes_files_and_prefixes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, vec![7u8; 200_000]).unwrap();
        let (sha, len) = hash_file(&p).await.unwrap();
        assert_eq!(len, 200_000);
        assert_eq!(sha, hex::encode(Sha256::digest(vec![7u8; 200_000])));
        let prefix = hash_prefix(&p, 10).await.unwrap();
        assert_eq!(
            prefix.finalize().to_vec(),
            Sha256::digest([7u8; 10]).to_vec()
        );
    }
}
