//! The device's non-volatile memory: a small state folder per device.
//!
//! A real pump keeps its boot slots, its update progress and its identity in
//! flash that survives a power cut. The simulator keeps the same in a
//! folder, so a killed `device-sim` (even `kill -9`) comes back where it
//! was:
//!
//! - `state.json`: [`DeviceState`]: the hardware id and manufacturer key the
//!   device was built with, which slot is active, what each slot holds, a
//!   trial boot awaiting health confirmation, and the pending download
//!   (campaign, target, version, bytes so far, the server's ETag).
//! - `slot-a.img`, `slot-b.img`: the two firmware slots ([`Slot`]).
//! - `seq.json`: the `seq` lease ([`crate::ota::seq`]).
//!
//! Every write is atomic: a temporary file is written and `fsync`ed, renamed
//! over the old one, and the folder is `fsync`ed, so a crash leaves either
//! the old or the new state, never a torn one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use semver::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ota::error::OtaError;
use crate::ota::slot::{Slot, SlotImage};

/// Format version of `state.json` this build writes.
pub const STATE_FORMAT: u32 = 1;
/// File name of the device state in the state folder.
pub const STATE_FILE: &str = "state.json";
/// Target name recorded for the image a device shipped with.
pub const FACTORY_TARGET: &str = "factory";

/// How a device was built: what it is given at first boot and checks at
/// every later boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factory {
    /// Hardware id the manufacturer's targets name (`hardware_ids`).
    pub hardware_id: String,
    /// The manufacturer's Ed25519 public key that signs this device's
    /// firmware (its delegated TUF targets role).
    pub manufacturer_key: VerifyingKey,
    /// Firmware version in slot A at first boot.
    pub firmware_version: Version,
}

impl Factory {
    /// Read a manufacturer public key as `tuf-repo keygen` writes it (the
    /// TUF key JSON, `{"keytype":"ed25519","keyval":{"public":"<hex>"},...}`)
    /// or as 64 hex digits.
    ///
    /// # Errors
    /// A reason in words naming the accepted forms.
    pub fn parse_manufacturer_key(text: &str) -> Result<VerifyingKey, String> {
        let text = text.trim();
        let hex_key = if text.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| format!("the manufacturer key file is not JSON: {e}"))?;
            if v.get("keytype").and_then(serde_json::Value::as_str) != Some("ed25519") {
                return Err("the manufacturer key is not an ed25519 TUF key".into());
            }
            v.pointer("/keyval/public")
                .and_then(serde_json::Value::as_str)
                .ok_or("the TUF key has no keyval.public")?
                .to_owned()
        } else {
            text.to_owned()
        };
        let bytes: [u8; 32] = hex::decode(&hex_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the manufacturer key is not 32 bytes of hex; give the `.pub.json` file `tuf-repo keygen` wrote for the manufacturer key, or its 64 hex digits")?;
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| "the manufacturer key is not a valid Ed25519 public key".into())
    }
}

/// An update whose image is being written to the idle slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingUpdate {
    /// Campaign that offered it.
    pub campaign_id: String,
    /// TUF target name.
    pub target_name: String,
    /// Version being installed.
    pub version: Version,
    /// Signed image length.
    pub length: u64,
    /// Signed image SHA-256 (lowercase hex).
    pub sha256: String,
    /// Where the image is downloaded from.
    pub download_url: String,
    /// The slot being written (always the one not active).
    pub slot: Slot,
    /// The server's ETag for the image, sent back in `If-Range` on resume so
    /// a changed image restarts from byte 0.
    pub etag: Option<String>,
    /// Bytes in the slot file at the last checkpoint (the slot file's length
    /// is the truth on resume; this is what an operator reads).
    pub bytes_downloaded: u64,
    /// Whether some of the bytes came from an earlier, interrupted transfer.
    pub resumed: bool,
    /// Whether the image was already downloaded again from byte 0 once
    /// because a resumed image failed its check.
    pub restarted_after_mismatch: bool,
}

impl PendingUpdate {
    /// Whether this pending update is for exactly the image described.
    #[must_use]
    pub fn is_for(&self, target_name: &str, length: u64, sha256: &str) -> bool {
        self.target_name == target_name && self.length == length && self.sha256 == sha256
    }
}

/// A slot that was installed and is being (or is to be) booted on trial:
/// until it confirms its health, the previous slot stays the fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trial {
    /// The newly installed slot.
    pub slot: Slot,
    /// Campaign that installed it.
    pub campaign_id: String,
    /// Its version.
    pub version: Version,
    /// Boots of the trial slot so far without a health confirmation. The
    /// bootloader gives it one boot: a second boot without confirmation
    /// (the device died during its self-test) rolls back.
    pub boot_attempts: u32,
}

/// Everything in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Hardware id the device was built with.
    pub hardware_id: String,
    /// Manufacturer public key the device was built with (hex, 32 bytes).
    pub manufacturer_key: String,
    /// The slot the device boots from and trusts.
    pub active: Slot,
    /// What slot A holds.
    pub slot_a: Option<SlotImage>,
    /// What slot B holds.
    pub slot_b: Option<SlotImage>,
    /// An installed slot awaiting its health confirmation.
    pub trial: Option<Trial>,
    /// A download in progress (or interrupted) into the idle slot.
    pub pending: Option<PendingUpdate>,
}

impl DeviceState {
    /// What `slot` holds.
    #[must_use]
    pub fn slot(&self, slot: Slot) -> Option<&SlotImage> {
        match slot {
            Slot::A => self.slot_a.as_ref(),
            Slot::B => self.slot_b.as_ref(),
        }
    }

    /// Set what `slot` holds.
    pub fn set_slot(&mut self, slot: Slot, image: Option<SlotImage>) {
        match slot {
            Slot::A => self.slot_a = image,
            Slot::B => self.slot_b = image,
        }
    }

    /// The image in the active slot.
    #[must_use]
    pub fn active_image(&self) -> Option<&SlotImage> {
        self.slot(self.active)
    }

    /// The slot an update is written to.
    #[must_use]
    pub fn idle_slot(&self) -> Slot {
        self.active.other()
    }

    /// Firmware version of the active slot.
    #[must_use]
    pub fn firmware_version(&self) -> Version {
        self.active_image()
            .map_or_else(|| Version::new(0, 0, 0), |i| i.version.clone())
    }

    fn check(&self, path: &Path) -> Result<(), OtaError> {
        let invalid = |reason: String| OtaError::StateInvalid {
            path: path.to_path_buf(),
            reason,
        };
        if self.format != STATE_FORMAT {
            return Err(invalid(format!(
                "format {} is not the format {STATE_FORMAT} this build reads",
                self.format
            )));
        }
        if self.active_image().is_none() {
            return Err(invalid(format!(
                "the active slot {} holds no image",
                self.active
            )));
        }
        if let Some(t) = &self.trial {
            if t.slot == self.active || self.slot(t.slot).is_none() {
                return Err(invalid(format!(
                    "the trial slot {} is the active slot or holds no image",
                    t.slot
                )));
            }
        }
        if let Some(p) = &self.pending {
            if p.slot == self.active {
                return Err(invalid(format!(
                    "a download targets the active slot {}",
                    p.slot
                )));
            }
        }
        Ok(())
    }
}

/// Write `bytes` to `path` atomically: temporary file, `fsync`, rename,
/// `fsync` of the folder.
///
/// # Errors
/// [`OtaError::State`] naming the file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OtaError> {
    let err = |action, p: &Path| {
        let p = p.to_path_buf();
        move |source| OtaError::State {
            action,
            path: p,
            source,
        }
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err("create", &tmp))?;
    f.write_all(bytes).map_err(err("write", &tmp))?;
    f.sync_all().map_err(err("sync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err("replace", path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("sync", dir))?;
    }
    Ok(())
}

/// Read and parse a JSON state file, or `None` if it does not exist.
///
/// # Errors
/// [`OtaError::State`] or [`OtaError::StateFormat`].
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, OtaError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| OtaError::StateFormat {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(OtaError::State {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The image a simulated device ships with in slot A: deterministic bytes
/// naming the hardware and version.
#[must_use]
pub fn factory_image(hardware_id: &str, version: &Version) -> Vec<u8> {
    let line = format!("wardgate simulated factory firmware {hardware_id} {version}\n");
    line.as_bytes().iter().copied().cycle().take(4096).collect()
}

/// A device's state folder, loaded.
#[derive(Debug)]
pub struct Nvram {
    dir: PathBuf,
    state: DeviceState,
}

impl Nvram {
    /// Open the state folder `dir`, or create it with the factory state
    /// (slot A holding `factory.firmware_version`) at first boot.
    ///
    /// # Errors
    /// [`OtaError::State`]/[`OtaError::StateFormat`]/[`OtaError::StateInvalid`]
    /// for an unreadable or damaged folder, [`OtaError::StateMismatch`] if
    /// the folder belongs to a device with another hardware id or
    /// manufacturer key.
    pub fn open_or_init(dir: &Path, factory: &Factory) -> Result<Self, OtaError> {
        std::fs::create_dir_all(dir).map_err(|source| OtaError::State {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(STATE_FILE);
        let key_hex = hex::encode(factory.manufacturer_key.as_bytes());
        if let Some(state) = read_json::<DeviceState>(&path)? {
            state.check(&path)?;
            if state.hardware_id != factory.hardware_id {
                return Err(OtaError::StateMismatch {
                    path: dir.to_path_buf(),
                    field: "hardware_id",
                    stored: state.hardware_id,
                    given: factory.hardware_id.clone(),
                });
            }
            if state.manufacturer_key != key_hex {
                return Err(OtaError::StateMismatch {
                    path: dir.to_path_buf(),
                    field: "manufacturer_key",
                    stored: state.manufacturer_key,
                    given: key_hex,
                });
            }
            return Ok(Self {
                dir: dir.to_path_buf(),
                state,
            });
        }
        let image = factory_image(&factory.hardware_id, &factory.firmware_version);
        write_atomically(&dir.join(Slot::A.file_name()), &image)?;
        let state = DeviceState {
            format: STATE_FORMAT,
            hardware_id: factory.hardware_id.clone(),
            manufacturer_key: key_hex,
            active: Slot::A,
            slot_a: Some(SlotImage {
                target_name: FACTORY_TARGET.into(),
                version: factory.firmware_version.clone(),
                length: image.len() as u64,
                sha256: hex::encode(Sha256::digest(&image)),
            }),
            slot_b: None,
            trial: None,
            pending: None,
        };
        write_atomically(&path, &serde_json::to_vec_pretty(&state)?)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            state,
        })
    }

    /// The state as last written.
    #[must_use]
    pub fn state(&self) -> &DeviceState {
        &self.state
    }

    /// The state folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a slot's image file.
    #[must_use]
    pub fn slot_path(&self, slot: Slot) -> PathBuf {
        self.dir.join(slot.file_name())
    }

    /// The manufacturer key the device was built with.
    ///
    /// # Errors
    /// [`OtaError::StateInvalid`] if the stored key is not an Ed25519 key.
    pub fn manufacturer_key(&self) -> Result<VerifyingKey, OtaError> {
        let invalid = |reason: &str| OtaError::StateInvalid {
            path: self.dir.join(STATE_FILE),
            reason: format!("manufacturer_key {reason}"),
        };
        let bytes: [u8; 32] = hex::decode(&self.state.manufacturer_key)
            .map_err(|_| invalid("is not hex"))?
            .try_into()
            .map_err(|_| invalid("is not 32 bytes"))?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| invalid("is not an Ed25519 public key"))
    }

    /// Change the state with `change` and write it atomically (on the
    /// blocking pool). The state in memory changes only once it is on disk.
    ///
    /// # Errors
    /// [`OtaError::State`] if the write fails; the state is then unchanged.
    pub async fn update(&mut self, change: impl FnOnce(&mut DeviceState)) -> Result<(), OtaError> {
        let mut next = self.state.clone();
        change(&mut next);
        if next == self.state {
            return Ok(());
        }
        let path = self.dir.join(STATE_FILE);
        next.check(&path)?;
        let bytes = serde_json::to_vec_pretty(&next)?;
        let p = path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&p, &bytes))
            .await
            .map_err(|e| OtaError::State {
                action: "write",
                path,
                source: std::io::Error::other(e),
            })??;
        self.state = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factory(seed: u8) -> Factory {
        Factory {
            hardware_id: "acme-pump-p7".into(),
            manufacturer_key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key(),
            firmware_version: Version::new(1, 0, 0),
        }
    }

    #[tokio::test]
    async fn first_boot_writes_the_factory_state_and_later_boots_reload_it() {
        let dir = tempfile::tempdir().unwrap();
        let nv = Nvram::open_or_init(dir.path(), &factory(1)).unwrap();
        assert_eq!(nv.state().active, Slot::A);
        assert_eq!(nv.state().firmware_version(), Version::new(1, 0, 0));
        assert_eq!(nv.manufacturer_key().unwrap(), factory(1).manufacturer_key);
        let slot_a = std::fs::read(nv.slot_path(Slot::A)).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&slot_a)),
            nv.state().slot_a.as_ref().unwrap().sha256
        );

        let mut nv = nv;
        nv.update(|s| {
            s.pending = Some(PendingUpdate {
                campaign_id: "c1".into(),
                target_name: "acme/fw.bin".into(),
                version: Version::new(2, 0, 0),
                length: 10,
                sha256: "00".repeat(32),
                download_url: "https://gw/fw".into(),
                slot: Slot::B,
                etag: Some("\"e1\"".into()),
                bytes_downloaded: 4,
                resumed: false,
                restarted_after_mismatch: false,
            });
        })
        .await
        .unwrap();
        // A later boot (a new process) sees what was written; the factory
        // version given then does not overwrite the stored state.
        let mut later = factory(1);
        later.firmware_version = Version::new(9, 9, 9);
        let again = Nvram::open_or_init(dir.path(), &later).unwrap();
        assert_eq!(again.state(), nv.state());
        assert!(!dir.path().join("state.tmp").exists());
    }

    #[test]
    fn a_manufacturer_key_is_read_from_tuf_json_or_hex() {
        let key = factory(3).manufacturer_key;
        let hex_key = hex::encode(key.as_bytes());
        let json = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{hex_key}"}},"scheme":"ed25519"}}"#
        );
        assert_eq!(Factory::parse_manufacturer_key(&json).unwrap(), key);
        assert_eq!(
            Factory::parse_manufacturer_key(&format!("{hex_key}\n")).unwrap(),
            key
        );
        for bad in [
            "abc",
            r#"{"keytype":"rsa","keyval":{"public":"00"}}"#,
            r#"{"keytype":"ed25519"}"#,
            "{",
        ] {
            let e = Factory::parse_manufacturer_key(bad).unwrap_err();
            assert!(
                e.contains("manufacturer key") || e.contains("TUF key"),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn a_folder_of_another_device_or_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Nvram::open_or_init(dir.path(), &factory(1)).unwrap();
        let e = Nvram::open_or_init(dir.path(), &factory(2)).unwrap_err();
        assert!(e.to_string().contains("manufacturer_key"), "{e}");
        let mut other_hw = factory(1);
        other_hw.hardware_id = "acme-monitor-m1".into();
        let e = Nvram::open_or_init(dir.path(), &other_hw).unwrap_err();
        assert!(e.to_string().contains("hardware_id"), "{e}");

        std::fs::write(dir.path().join(STATE_FILE), b"{\"format\":").unwrap();
        let e = Nvram::open_or_init(dir.path(), &factory(1)).unwrap_err();
        assert!(matches!(e, OtaError::StateFormat { .. }), "{e}");
        assert!(e.to_string().contains("factory state"), "{e}");
    }

    #[tokio::test]
    async fn an_update_that_would_break_the_slot_rules_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut nv = Nvram::open_or_init(dir.path(), &factory(1)).unwrap();
        let before = nv.state().clone();
        let e = nv
            .update(|s| {
                s.trial = Some(Trial {
                    slot: Slot::A,
                    campaign_id: "c".into(),
                    version: Version::new(2, 0, 0),
                    boot_attempts: 0,
                });
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("trial slot"), "{e}");
        assert_eq!(nv.state(), &before);
        assert_eq!(
            Nvram::open_or_init(dir.path(), &factory(1))
                .unwrap()
                .state(),
            &before
        );
    }
}
