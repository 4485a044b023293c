//! The OTA server's side: check a manufacturer's upload and write the next
//! repository version.
//!
//! [`check_upload`] verifies, against the current repository:
//! 1. the role metadata parses (malformed or truncated JSON is refused);
//! 2. the manufacturer is delegated, and the metadata carries a threshold of
//!    valid signatures from the delegation's keys (also confirmed by tough's
//!    own `Delegations::verify_role`);
//! 3. it has not expired and its version is above the published one;
//! 4. every target lies in `<manufacturer>/*` and has a safe name;
//! 5. every new target has valid firmware metadata, a version above the
//!    published ones for the same hardware, and an uploaded image whose
//!    length and SHA-256 match the signed entry.
//!
//! [`publish`] then copies the repository into a fresh output directory
//! (images hard-linked), adds the role metadata and images, and re-signs
//! snapshot and timestamp with the online keys; the server swaps the
//! directory in atomically. [`accept_upload`] does both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tough::schema::{Signed, Targets};

use super::layout::{self, RepoDir};
use super::signing::{count_valid, trusted_ids};
use super::{online, RepoState};
use crate::error::{Error, Result};
use crate::firmware::FirmwareMeta;
use crate::hashing::{self, FileDigest};
use crate::keys::SigningKey;
use crate::policy;
use crate::target_name::{ManufacturerName, TargetPath};
use crate::verify::RoleStatus;

/// A manufacturer's upload as the server received it.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The role the upload claims to be for (from the upload's route or form).
    pub manufacturer: ManufacturerName,
    /// The signed `<manufacturer>.json` bytes, exactly as uploaded.
    pub role_metadata: Vec<u8>,
    /// Uploaded image files; each is matched to a target by file name.
    pub images: Vec<PathBuf>,
}

/// A new target found in an upload, with its checked image.
#[derive(Debug, Clone)]
pub struct NewTarget {
    /// The target name.
    pub name: TargetPath,
    /// The uploaded image that matches it.
    pub image: PathBuf,
    /// Its length and hash (equal to the signed entry's).
    pub digest: FileDigest,
    /// Its firmware facts.
    pub firmware: FirmwareMeta,
}

/// An upload that passed every check in [`check_upload`].
#[derive(Debug, Clone)]
pub struct CheckedUpload {
    /// The role.
    pub manufacturer: ManufacturerName,
    /// The new role metadata version.
    pub role_version: u64,
    /// Targets that are new in this version.
    pub new_targets: Vec<NewTarget>,
    role_bytes: Vec<u8>,
}

/// The online keys the server holds.
#[derive(Debug, Clone)]
pub struct OnlineKeys {
    /// Snapshot keys (a threshold of them).
    pub snapshot: Vec<SigningKey>,
    /// Timestamp keys.
    pub timestamp: Vec<SigningKey>,
}

/// What [`publish`] wrote.
#[derive(Debug, Clone)]
pub struct PublishedVersion {
    /// The output directory holding the new repository version.
    pub dir: PathBuf,
    /// The role and its new version.
    pub role: RoleStatus,
    /// The new snapshot.
    pub snapshot: RoleStatus,
    /// The new timestamp.
    pub timestamp: RoleStatus,
    /// Targets added.
    pub new_targets: Vec<TargetPath>,
}

/// Runs every check on `upload` against the repository in `repo`.
pub async fn check_upload(repo: &RepoDir, upload: &Upload) -> Result<CheckedUpload> {
    let m = &upload.manufacturer;
    let upload_name = PathBuf::from(format!("<upload>/{m}.json"));
    let role: Signed<Targets> = layout::parse_signed_strict(
        &upload.role_metadata,
        &upload_name,
        "delegated targets metadata",
    )?;
    let state = RepoState::load(repo)?;
    let delegation = state.delegation(m)?;
    let delegations = state.targets.signed.delegations.clone().unwrap_or_default();

    // Signatures: ours first for a precise reason, then tough's as the authority.
    let role_keys = delegation.keys();
    let valid = count_valid(&role, &role_keys, &delegations.keys);
    if valid < role_keys.threshold.get() {
        let trusted = trusted_ids(&role_keys);
        if let Some(foreign) = role
            .signatures
            .iter()
            .map(|s| hex::encode(&*s.keyid))
            .find(|id| !trusted.contains(id))
        {
            return Err(Error::UntrustedKey {
                role: m.to_string(),
                key_id: foreign,
                trusted,
            });
        }
        return Err(Error::ThresholdNotMet {
            role: m.to_string(),
            threshold: role_keys.threshold.get(),
            valid,
        });
    }
    delegations
        .verify_role(&role, m.as_str())
        .map_err(|e| Error::Schema {
            context: format!("verifying role '{m}' against its delegation"),
            source: Box::new(e),
        })?;

    if role.signed.expires <= jiff::Timestamp::now() {
        return Err(Error::Expired {
            role: m.to_string(),
            expired_at: role.signed.expires.to_string(),
            resign: "release",
        });
    }
    let published = state.delegated.get(m.as_str()).map(|s| &s.signed);
    if let Some(p) = published {
        if role.signed.version <= p.version {
            return Err(Error::MetadataRollback {
                role: m.to_string(),
                published: p.version.get(),
                offered: role.signed.version.get(),
            });
        }
    }
    if role
        .signed
        .delegations
        .as_ref()
        .is_some_and(|d| !d.roles.is_empty())
    {
        return Err(Error::InvalidArgument {
            what: "upload",
            reason: format!("role '{m}' may not delegate further"),
        });
    }

    let mut new_targets = Vec::new();
    for (name, target) in &role.signed.targets {
        let path = policy::check_scope(m, name.raw())?;
        let unchanged = published
            .and_then(|p| p.targets.get(name))
            .is_some_and(|p| p == target);
        if unchanged {
            continue;
        }
        let fw = FirmwareMeta::from_custom(name.raw(), &target.custom)?;
        policy::check_new_target(published, &path, target, &fw)?;
        let image = upload
            .images
            .iter()
            .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(path.file()))
            .ok_or_else(|| Error::InvalidArgument {
                what: "upload",
                reason: format!(
                    "no image named {} for new target {path}; upload it with the metadata",
                    path.file()
                ),
            })?;
        let digest = hashing::hash_file_async(image, path.file()).await?;
        if digest.length != target.length {
            return Err(Error::ImageMismatch {
                target: path.to_string(),
                what: "length",
                expected: target.length.to_string(),
                actual: digest.length.to_string(),
            });
        }
        if digest.sha256[..] != target.hashes.sha256[..] {
            return Err(Error::ImageMismatch {
                target: path.to_string(),
                what: "sha256",
                expected: hex::encode(&*target.hashes.sha256),
                actual: digest.sha256_hex(),
            });
        }
        new_targets.push(NewTarget {
            name: path,
            image: image.clone(),
            digest,
            firmware: fw,
        });
    }
    Ok(CheckedUpload {
        manufacturer: m.clone(),
        role_version: role.signed.version.get(),
        new_targets,
        role_bytes: upload.role_metadata.clone(),
    })
}

/// Places an image in `repo` under both consistent-snapshot file names.
pub(crate) fn place_image(
    repo: &RepoDir,
    name: &TargetPath,
    digest: &FileDigest,
    image: &Path,
) -> Result<()> {
    let sha = digest.sha256_hex();
    let spec = repo.targets_dir().join(name.consistent_file_spec(&sha));
    let tough = repo.targets_dir().join(name.consistent_file_tough(&sha));
    layout::link_or_copy(image, &spec)?;
    layout::link_or_copy(&spec, &tough)
}

/// Writes the next repository version into `out_dir` (absent or empty):
/// the current repository, plus the checked role metadata and images, with
/// snapshot and timestamp re-signed by `online` keys.
pub async fn publish(
    repo: &RepoDir,
    checked: &CheckedUpload,
    online_keys: &OnlineKeys,
    snapshot_expiry: Duration,
    timestamp_expiry: Duration,
    out_dir: &Path,
) -> Result<PublishedVersion> {
    let out = RepoDir::new(out_dir);
    layout::copy_repo(repo, &out)?;
    for t in &checked.new_targets {
        place_image(&out, &t.name, &t.digest, &t.image)?;
    }
    layout::write_versioned(
        &out,
        checked.manufacturer.as_str(),
        checked.role_version,
        &checked.role_bytes,
    )?;
    let role: Signed<Targets> =
        layout::parse_json(&checked.role_bytes, out_dir, "delegated targets metadata")?;
    let snapshot = online::snapshot(&out, &online_keys.snapshot, snapshot_expiry).await?;
    let timestamp =
        online::refresh_timestamp(&out, &online_keys.timestamp, timestamp_expiry).await?;
    tracing::info!(
        manufacturer = %checked.manufacturer,
        role_version = checked.role_version,
        targets = checked.new_targets.len(),
        "release published"
    );
    Ok(PublishedVersion {
        dir: out_dir.to_owned(),
        role: RoleStatus::new(
            checked.manufacturer.as_str(),
            checked.role_version,
            role.signed.expires,
        ),
        snapshot,
        timestamp,
        new_targets: checked.new_targets.iter().map(|t| t.name.clone()).collect(),
    })
}

/// [`check_upload`] then [`publish`].
pub async fn accept_upload(
    repo: &RepoDir,
    upload: &Upload,
    online_keys: &OnlineKeys,
    snapshot_expiry: Duration,
    timestamp_expiry: Duration,
    out_dir: &Path,
) -> Result<PublishedVersion> {
    let checked = check_upload(repo, upload).await?;
    publish(
        repo,
        &checked,
        online_keys,
        snapshot_expiry,
        timestamp_expiry,
        out_dir,
    )
    .await
}

/// Reads an upload bundle directory written by `release`:
/// `<manufacturer>.json` plus the images next to it.
pub fn read_bundle(dir: &Path, manufacturer: &ManufacturerName) -> Result<Upload> {
    let meta = dir.join(format!("{manufacturer}.json"));
    let role_metadata = std::fs::read(&meta).map_err(|e| Error::io("reading", &meta, e))?;
    let mut images = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let p = entry.path();
        if p != meta && p.is_file() {
            images.push(p);
        }
    }
    Ok(Upload {
        manufacturer: manufacturer.clone(),
        role_metadata,
        images,
    })
}
