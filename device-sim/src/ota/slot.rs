//! The two firmware slots (A/B) of a device's flash and the check of an
//! image lying in one.
//!
//! The device runs from one slot and installs into the other, so the
//! running firmware is never overwritten by an update: a failed download, a
//! tampered image or a failed self-test leaves the previous slot bootable.
//! [`check_slot_file`] streams a slot file through
//! [`wardgate_protocol::ImageCheck`] (the device-side length and SHA-256
//! rule) without holding the image in memory.

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use semver::Version;
use serde::{Deserialize, Serialize};
use wardgate_protocol::VerifiedOffer;

/// One of the two firmware slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot A (holds the factory firmware at first boot).
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// The other slot.
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// File name of the slot's image in the state folder.
    #[must_use]
    pub fn file_name(self) -> &'static str {
        match self {
            Slot::A => "slot-a.img",
            Slot::B => "slot-b.img",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "a",
            Slot::B => "b",
        })
    }
}

/// What a slot holds: an image that was checked against the manufacturer's
/// signed metadata when it was installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotImage {
    /// TUF target name (`factory` for the image the device shipped with).
    pub target_name: String,
    /// Firmware version.
    pub version: Version,
    /// Image length in bytes.
    pub length: u64,
    /// Image SHA-256, lowercase hex.
    pub sha256: String,
}

impl SlotImage {
    /// The image's expected length and hash, in the form the protocol's
    /// image check takes.
    #[must_use]
    pub fn expectation(&self) -> VerifiedOffer {
        VerifiedOffer {
            target_name: self.target_name.clone(),
            version: self.version.clone(),
            length: self.length,
            sha256: self.sha256.clone(),
        }
    }
}

/// Why a slot file did not pass its check.
#[derive(Debug, thiserror::Error)]
pub enum SlotCheckError {
    /// The file could not be read.
    #[error("cannot read slot image {path}: {source}")]
    Io {
        /// The slot file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Length or SHA-256 differ from the signed ones.
    #[error(transparent)]
    Mismatch(#[from] wardgate_protocol::ProtocolError),
}

/// Check the image in `path` against `expected` (length and SHA-256), by
/// streaming it; blocking, so call it from `spawn_blocking`.
///
/// # Errors
/// [`SlotCheckError::Io`] if the file cannot be read,
/// [`SlotCheckError::Mismatch`] naming the first check that failed.
pub fn check_slot_file(path: &Path, expected: &VerifiedOffer) -> Result<(), SlotCheckError> {
    let io = |source| SlotCheckError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut check = expected.image_check();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        check.update(&buf[..n]);
        // A file longer than the signed length fails anyway; stop reading.
        if check.bytes_seen() > expected.length {
            break;
        }
    }
    check.finish()?;
    Ok(())
}

/// [`check_slot_file`] on the blocking pool.
///
/// # Errors
/// As [`check_slot_file`].
pub async fn check_slot_file_async(
    path: &Path,
    expected: &VerifiedOffer,
) -> Result<(), SlotCheckError> {
    let path_buf = path.to_path_buf();
    let expected = expected.clone();
    match tokio::task::spawn_blocking(move || check_slot_file(&path_buf, &expected)).await {
        Ok(r) => r,
        Err(e) => Err(SlotCheckError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn slots_alternate_and_name_their_files() {
        assert_eq!(Slot::A.other(), Slot::B);
        assert_eq!(Slot::B.other(), Slot::A);
        assert_eq!(Slot::B.file_name(), "slot-b.img");
        assert_eq!(Slot::A.to_string(), "a");
    }

    #[test]
    fn a_slot_file_is_checked_by_length_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slot-b.img");
        let image: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(&path, &image).unwrap();
        let good = SlotImage {
            target_name: "acme/fw.bin".into(),
            version: Version::new(2, 0, 0),
            length: image.len() as u64,
            sha256: hex::encode(Sha256::digest(&image)),
        };
        check_slot_file(&path, &good.expectation()).unwrap();

        let mut longer = image.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        let e = check_slot_file(&path, &good.expectation()).unwrap_err();
        assert!(e.to_string().contains("signed length"), "{e}");

        let mut flipped = image;
        flipped[12_345] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let e = check_slot_file(&path, &good.expectation()).unwrap_err();
        assert!(e.to_string().contains("SHA-256"), "{e}");

        let e = check_slot_file(&dir.path().join("missing"), &good.expectation()).unwrap_err();
        assert!(matches!(e, SlotCheckError::Io { .. }));
    }
}
