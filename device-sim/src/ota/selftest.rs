//! The self-test a device runs after booting a newly installed slot.
//!
//! Until the new firmware confirms its health, the bootloader keeps the
//! previous slot as the fallback (see [`crate::ota::nvram::Trial`]). The
//! simulated self-test checks what a real one can check without a patient:
//! that the image it booted is, byte for byte, the one that was installed
//! (length and SHA-256 against the signed values recorded at install), and
//! it honours the fault switches (`self-test-fails`, `self-test-takes`).

use std::path::Path;

use crate::ota::faults::Faults;
use crate::ota::slot::{check_slot_file_async, SlotImage};

/// Run the self-test of `image` booted from `path`; `Err` says in words why
/// it failed.
///
/// # Errors
/// The reason the image is not healthy.
pub async fn self_test(path: &Path, image: &SlotImage, faults: &Faults) -> Result<(), String> {
    if let Some(d) = faults.self_test_takes {
        tokio::time::sleep(d).await;
    }
    check_slot_file_async(path, &image.expectation())
        .await
        .map_err(|e| format!("the booted image is not the installed one ({e})"))?;
    if faults.self_test_fails_for(&image.target_name, &image.version) {
        return Err(format!(
            "the self-test of {} {} failed (fault switch self-test-fails)",
            image.target_name, image.version
        ));
    }
    Ok(())
}
