//! Streaming SHA-256 of (possibly large) firmware images, with a progress
//! bar on a terminal.
//!
//! Reads in 1 MiB blocks; `sha2` uses the CPU's SHA extensions when present.
//! The bar draws on stderr only when stderr is a terminal (indicatif hides it
//! otherwise), so logs and tests stay clean. Call from blocking context
//! (`spawn_blocking` in async code).

use std::io::Read;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Read block size.
const BLOCK: usize = 1 << 20;

/// Length and SHA-256 of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    /// Length in bytes.
    pub length: u64,
    /// SHA-256 digest.
    pub sha256: [u8; 32],
}

impl FileDigest {
    /// The digest in lowercase hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Hashes `path`, showing progress labelled `label` when stderr is a terminal.
pub fn hash_file(path: &Path, label: &str) -> Result<FileDigest> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    let mut length = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        length += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(FileDigest {
        length,
        sha256: hasher.finalize().into(),
    })
}

/// [`hash_file`] on tokio's blocking pool.
pub async fn hash_file_async(path: &Path, label: &str) -> Result<FileDigest> {
    let path = path.to_owned();
    let label = label.to_owned();
    tokio::task::spawn_blocking(move || hash_file(&path, &label))
        .await
        .map_err(|e| {
            Error::io(
                "hashing",
                "<blocking task>",
                std::io::Error::other(e.to_string()),
            )
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        let d = hash_file(&p, "x").unwrap();
        assert_eq!(d.length, 3);
        assert_eq!(
            d.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
