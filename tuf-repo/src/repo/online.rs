//! The online roles: snapshot and timestamp.
//!
//! [`snapshot`] lists the newest version, length and SHA-256 of the
//! top-level targets and every delegated role; [`refresh_timestamp`] points at
//! the newest snapshot. The timestamp touches only three small files (root
//! for its keys, the newest snapshot, the old timestamp), so the OTA server
//! can run it every few minutes.

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tough::schema::{Hashes, Metafile, RoleType, Signed, Snapshot, Targets, Timestamp};

use super::layout::{self, RepoDir};
use super::signing::sign_under_root;
use super::{expiry_from_now, next_version, SPEC_VERSION};
use crate::error::{Error, Result};
use crate::keys::SigningKey;
use crate::verify::RoleStatus;

fn metafile(bytes: &[u8], version: std::num::NonZeroU64) -> Metafile {
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: Sha256::digest(bytes).to_vec().into(),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

/// Writes a new snapshot version covering the newest targets and delegated
/// role metadata, signed by `keys` (the snapshot role's threshold).
pub async fn snapshot(repo: &RepoDir, keys: &[SigningKey], expiry: Duration) -> Result<RoleStatus> {
    let root = layout::read_root(repo)?;
    let (targets, targets_bytes): (Signed<Targets>, _) =
        layout::read_metadata(repo, "targets.json", "targets metadata")?;
    let old: Option<Signed<Snapshot>> =
        layout::read_optional(repo, "snapshot.json", "snapshot metadata")?;
    let version = old.as_ref().map_or(std::num::NonZeroU64::MIN, |s| {
        next_version(s.signed.version)
    });
    let mut snap = Snapshot::new(SPEC_VERSION.to_owned(), version, expiry_from_now(expiry)?);
    snap.meta.insert(
        "targets.json".to_owned(),
        metafile(&targets_bytes, targets.signed.version),
    );
    if let Some(d) = &targets.signed.delegations {
        for role in &d.roles {
            let file = format!(
                "{}.json",
                crate::target_name::ManufacturerName::new(role.name.clone())?
            );
            let path = repo.metadata_file(&file);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let t: Signed<Targets> =
                        layout::parse_json(&bytes, &path, "delegated targets metadata")?;
                    snap.meta.insert(file, metafile(&bytes, t.signed.version));
                }
                // Delegated but nothing published yet: not in the snapshot.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("reading", &path, e)),
            }
        }
    }
    // Rollback guard: no listed role may go back in version.
    if let Some(old) = &old {
        for (file, m) in &old.signed.meta {
            if let Some(new) = snap.meta.get(file) {
                if new.version < m.version {
                    return Err(Error::MetadataRollback {
                        role: file.trim_end_matches(".json").to_owned(),
                        published: m.version.get(),
                        offered: new.version.get(),
                    });
                }
            }
        }
    }
    let expires = snap.expires;
    let signed = sign_under_root("snapshot", RoleType::Snapshot, snap, root.signed, keys).await?;
    layout::write_versioned(repo, "snapshot", version.get(), signed.buffer())?;
    tracing::info!(version = version.get(), "snapshot signed");
    Ok(RoleStatus::new("snapshot", version.get(), expires))
}

/// Re-signs `timestamp.json` for the newest snapshot with a new expiry.
/// Cheap: reads root, the newest snapshot and the old timestamp only.
pub async fn refresh_timestamp(
    repo: &RepoDir,
    keys: &[SigningKey],
    expiry: Duration,
) -> Result<RoleStatus> {
    let root = layout::read_root(repo)?;
    let (snap, snap_bytes): (Signed<Snapshot>, _) =
        layout::read_metadata(repo, "snapshot.json", "snapshot metadata")?;
    let ts_path = repo.metadata_file("timestamp.json");
    let old: Option<Signed<Timestamp>> =
        layout::read_optional(repo, "timestamp.json", "timestamp metadata")?;
    let version = old.map_or(std::num::NonZeroU64::MIN, |t| {
        next_version(t.signed.version)
    });
    let mut ts = Timestamp::new(SPEC_VERSION.to_owned(), version, expiry_from_now(expiry)?);
    ts.meta.insert(
        "snapshot.json".to_owned(),
        metafile(&snap_bytes, snap.signed.version),
    );
    let expires = ts.expires;
    let signed = sign_under_root("timestamp", RoleType::Timestamp, ts, root.signed, keys).await?;
    layout::write_atomic(&ts_path, signed.buffer())?;
    tracing::info!(
        version = version.get(),
        snapshot_version = snap.signed.version.get(),
        "timestamp signed"
    );
    Ok(RoleStatus::new("timestamp", version.get(), expires))
}
