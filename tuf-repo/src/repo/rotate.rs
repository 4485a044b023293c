//! Root rotation: a new root version that changes any role's keys.
//!
//! TUF clients accept root `N+1` only if it is signed by a threshold of the
//! root keys in `N` *and* a threshold of the root keys in `N+1`. [`rotate`]
//! signs with both sets (a key in both counts for both), checks the result
//! with tough's own verifier against both roots, and writes `N+1.root.json`.
//! After rotating the targets, snapshot or timestamp keys, re-sign that role
//! with its new keys (`delegate`/`resign_targets`, `snapshot`, `timestamp`).

use std::time::Duration;

use tough::schema::{KeyHolder, RoleType};

use super::init::{set_role_keys, RoleSpec};
use super::layout::{self, RepoDir};
use super::signing::{root_role_keys, sign_role, trusted_ids};
use super::{expiry_from_now, next_version};
use crate::error::{Error, Result};
use crate::keys::SigningKey;

/// Writes root version `N+1` in which `role` has the keys and threshold in
/// `spec`, signed by `signers` (they must include a threshold of the old
/// root keys and a threshold of the new root keys). Returns the new version.
pub async fn rotate(
    repo: &RepoDir,
    role: RoleType,
    spec: &RoleSpec,
    signers: &[SigningKey],
    root_expiry: Duration,
) -> Result<u64> {
    if role == RoleType::DelegatedTargets {
        return Err(Error::InvalidArgument {
            what: "role",
            reason: "manufacturer keys are replaced with `tuf-repo delegate`, not in root".into(),
        });
    }
    let old = layout::read_root(repo)?.signed;
    let mut new = old.clone();
    new.version = next_version(old.version);
    new.expires = expiry_from_now(root_expiry)?;
    set_role_keys(&mut new, role, spec)?;
    let version = new.version.get();

    let old_keys = root_role_keys(&old, RoleType::Root)?;
    let new_keys = root_role_keys(&new, RoleType::Root)?;
    let old_ids = trusted_ids(&old_keys);
    let new_ids = trusted_ids(&new_keys);
    if let Some(stray) = signers
        .iter()
        .find(|k| !old_ids.iter().chain(&new_ids).any(|t| t == k.key_id()))
    {
        return Err(Error::UntrustedKey {
            role: "root".into(),
            key_id: stray.key_id().to_owned(),
            trusted: old_ids.iter().chain(&new_ids).cloned().collect(),
        });
    }
    let old_signers: Vec<SigningKey> = signers
        .iter()
        .filter(|k| old_ids.iter().any(|t| t == k.key_id()))
        .cloned()
        .collect();
    let new_signers: Vec<SigningKey> = signers
        .iter()
        .filter(|k| new_ids.iter().any(|t| t == k.key_id()))
        .cloned()
        .collect();
    let by_old = sign_role(
        &format!("root (version {} keys)", old.version),
        new.clone(),
        &KeyHolder::Root(old.clone()),
        &old_keys,
        &old_signers,
    )
    .await?;
    let by_new = sign_role(
        &format!("root (version {version} keys)"),
        new.clone(),
        &KeyHolder::Root(new.clone()),
        &new_keys,
        &new_signers,
    )
    .await?;
    let signed = by_new
        .add_old_signatures(by_old.signed().signatures.clone())
        .map_err(|e| Error::tough("merging root signatures", e))?;
    for (which, r) in [("old", &old), ("new", &new)] {
        r.verify_role(signed.signed()).map_err(|e| Error::Schema {
            context: format!("root v{version} against the {which} root's keys"),
            source: Box::new(e),
        })?;
    }
    layout::write_versioned(repo, "root", version, signed.buffer())?;
    tracing::info!(role = %role, root_version = version, "root rotated");
    Ok(version)
}
