//! The device's `seq`, kept across restarts.
//!
//! The gateway refuses any `seq` it has seen from a device before, across
//! restarts of either side, so a device must never reuse one, even after a
//! power cut. Writing every `seq` to flash would cost a sync per message; a
//! [`SeqLease`] instead writes a high-water mark ahead of use, in blocks of
//! [`SEQ_BLOCK`]: every `seq` a device has used is at or below the mark on
//! disk, and after a restart it continues above it. A state folder without a
//! lease (a new device, or one whose memory was wiped) starts from the wall
//! clock in milliseconds, which is above anything the device used before.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ota::error::OtaError;
use crate::ota::nvram::{read_json, write_atomically};

/// File name of the lease in the state folder.
pub const SEQ_FILE: &str = "seq.json";
/// How many `seq` values one write reserves.
pub const SEQ_BLOCK: u64 = 1000;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseFile {
    /// Every seq used so far is at or below this.
    reserved: u64,
}

/// The `seq` high-water mark of one device.
#[derive(Debug)]
pub struct SeqLease {
    path: PathBuf,
    reserved: u64,
}

impl SeqLease {
    /// Load the lease from the state folder `dir` (creating it, from the
    /// wall clock, if there is none).
    ///
    /// # Errors
    /// [`OtaError::State`] or [`OtaError::StateFormat`].
    pub fn open(dir: &Path) -> Result<Self, OtaError> {
        let path = dir.join(SEQ_FILE);
        if let Some(f) = read_json::<LeaseFile>(&path)? {
            return Ok(Self {
                path,
                reserved: f.reserved,
            });
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2));
        write_atomically(&path, &serde_json::to_vec(&LeaseFile { reserved: now_ms })?)?;
        Ok(Self {
            path,
            reserved: now_ms,
        })
    }

    /// The `seq` a device sets at boot (`SimDevice::set_seq`): its next
    /// message uses the one above, which no earlier message used.
    #[must_use]
    pub fn boot_seq(&self) -> u64 {
        self.reserved
    }

    /// The high-water mark on disk.
    #[must_use]
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Make sure `next` (the `seq` about to be used) is covered by the mark
    /// on disk; writes a new mark [`SEQ_BLOCK`] ahead when it is not. Call
    /// before every publish.
    ///
    /// # Errors
    /// [`OtaError::State`] if the mark cannot be written; do not publish
    /// then.
    pub async fn cover(&mut self, next: u64) -> Result<(), OtaError> {
        if next <= self.reserved {
            return Ok(());
        }
        let reserved = next.saturating_add(SEQ_BLOCK);
        let bytes = serde_json::to_vec(&LeaseFile { reserved })?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| OtaError::State {
                action: "write",
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })??;
        self.reserved = reserved;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_restarted_device_continues_above_every_seq_it_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut lease = SeqLease::open(dir.path()).unwrap();
        let start = lease.boot_seq();
        assert!(start > 1_600_000_000_000, "starts from the wall clock");
        // Use a few hundred seqs, covering each before "publishing" it.
        let mut last = start;
        for _ in 0..(SEQ_BLOCK + 5) {
            last += 1;
            lease.cover(last).await.unwrap();
        }
        // Power cut: the next boot starts above the last seq used.
        let again = SeqLease::open(dir.path()).unwrap();
        assert!(again.boot_seq() >= last, "{} < {last}", again.boot_seq());
        assert!(again.boot_seq() <= last + SEQ_BLOCK);
    }
}
