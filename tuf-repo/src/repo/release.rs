//! The manufacturer's side: sign a new firmware image into its own role and
//! produce the upload bundle for the OTA server.
//!
//! Needs only the manufacturer's key and a copy of the repository metadata
//! (to read the delegation and the role's published version). The bundle is
//! a directory holding `<manufacturer>.json` (the signed role metadata, the
//! exact bytes the server will publish) and the image under its file name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tough::schema::{DelegatedTargets, Hashes, KeyHolder, Target, Targets};

use super::layout::{self, RepoDir};
use super::signing::sign_role;
use super::{expiry_from_now, next_version, RepoState, SPEC_VERSION};
use crate::error::{Error, Result};
use crate::firmware::FirmwareMeta;
use crate::hashing::{self, FileDigest};
use crate::keys::SigningKey;
use crate::policy;
use crate::target_name::{ManufacturerName, TargetPath};

/// One release.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    /// The manufacturer's role.
    pub manufacturer: ManufacturerName,
    /// The raw target name (`<manufacturer>/<file>`); checked against the
    /// role's scope.
    pub target: String,
    /// The image file.
    pub image: PathBuf,
    /// Firmware facts for `custom`.
    pub firmware: FirmwareMeta,
    /// Expiry of the new role metadata.
    pub expiry: Duration,
}

/// What `release` wrote.
#[derive(Debug, Clone)]
pub struct UploadBundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// `<dir>/<manufacturer>.json`.
    pub role_metadata: PathBuf,
    /// `<dir>/<file>`.
    pub image: PathBuf,
    /// The target name.
    pub target: TargetPath,
    /// The image's length and hash.
    pub digest: FileDigest,
    /// The new role metadata version.
    pub role_version: u64,
}

/// Signs `req` into the manufacturer's role with `keys` and writes the
/// upload bundle into `out_dir` (created if needed).
pub async fn release(
    repo: &RepoDir,
    req: &ReleaseRequest,
    keys: &[SigningKey],
    out_dir: &Path,
) -> Result<UploadBundle> {
    let state = RepoState::load(repo)?;
    let delegation = state.delegation(&req.manufacturer)?.clone();
    let target_path = policy::check_scope(&req.manufacturer, &req.target)?;
    let digest = hashing::hash_file_async(&req.image, target_path.file()).await?;
    let target = Target {
        length: digest.length,
        hashes: Hashes {
            sha256: digest.sha256.to_vec().into(),
            _extra: HashMap::new(),
        },
        custom: req.firmware.to_custom(),
        _extra: HashMap::new(),
    };
    let published = state
        .delegated
        .get(req.manufacturer.as_str())
        .map(|s| &s.signed);
    policy::check_new_target(published, &target_path, &target, &req.firmware)?;

    let mut targets = match published {
        Some(p) => {
            let mut t = p.clone();
            t.version = next_version(t.version);
            t
        }
        None => Targets::new(
            SPEC_VERSION.to_owned(),
            std::num::NonZeroU64::MIN,
            expiry_from_now(req.expiry)?,
        ),
    };
    targets.expires = expiry_from_now(req.expiry)?;
    // A manufacturer's role lists images; it never delegates further.
    targets.delegations = None;
    targets.targets.insert(target_path.to_tough()?, target);
    let version = targets.version.get();

    let delegations = state.targets.signed.delegations.clone().unwrap_or_default();
    let role_keys = delegation.keys();
    let role = DelegatedTargets {
        name: req.manufacturer.to_string(),
        targets,
    };
    let signed = sign_role(
        req.manufacturer.as_str(),
        role,
        &KeyHolder::Delegations(delegations),
        &role_keys,
        keys,
    )
    .await?;

    std::fs::create_dir_all(out_dir).map_err(|e| Error::io("creating directory", out_dir, e))?;
    let role_metadata = out_dir.join(format!("{}.json", req.manufacturer));
    layout::write_atomic(&role_metadata, signed.buffer())?;
    let image = out_dir.join(target_path.file());
    if image != req.image {
        std::fs::copy(&req.image, &image).map_err(|e| Error::io("copying image to", &image, e))?;
    }
    tracing::info!(manufacturer = %req.manufacturer, target = %target_path, role_version = version, "release signed");
    Ok(UploadBundle {
        dir: out_dir.to_owned(),
        role_metadata,
        image,
        target: target_path,
        digest,
        role_version: version,
    })
}
