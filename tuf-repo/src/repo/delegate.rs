//! Delegating a manufacturer's path scope from the top-level targets role.
//!
//! The top-level targets role lists no targets of its own: it only names,
//! for each manufacturer `M`, the keys and threshold of a delegated role `M`
//! trusted for `M/*`. Re-delegating an existing manufacturer replaces its
//! keys (key rotation for a manufacturer).

use std::time::Duration;

use tough::schema::key::Key;
use tough::schema::{DelegatedRole, Delegations, KeyHolder, PathPattern, PathSet, RoleType};

use super::layout::{self, RepoDir};
use super::signing::{self, root_role_keys, sign_role};
use super::{expiry_from_now, next_version, RepoState};
use crate::error::{Error, Result};
use crate::keys::{self, SigningKey};
use crate::target_name::ManufacturerName;

/// Adds (or replaces) the delegation for `manufacturer` with `keys` and
/// `threshold`, path pattern `<manufacturer>/*`, and writes a new top-level
/// targets version signed by `targets_signers`. Run `snapshot` and
/// `timestamp` afterwards to publish it.
pub async fn delegate(
    repo: &RepoDir,
    manufacturer: &ManufacturerName,
    manufacturer_keys: &[Key],
    threshold: u64,
    targets_signers: &[SigningKey],
    expiry: Duration,
) -> Result<u64> {
    let state = RepoState::load(repo)?;
    if manufacturer_keys.is_empty() || threshold > manufacturer_keys.len() as u64 {
        return Err(Error::InvalidArgument {
            what: "delegation",
            reason: format!(
                "manufacturer '{manufacturer}' has {} key(s) and threshold {threshold}; give at least threshold keys",
                manufacturer_keys.len()
            ),
        });
    }
    let mut targets = state.targets.signed.clone();
    if !targets.targets.is_empty() {
        tracing::warn!(
            "top-level targets lists targets of its own; they are kept but Wardgate only delegates"
        );
    }
    let mut delegations = targets.delegations.take().unwrap_or_else(Delegations::new);
    let mut ids = Vec::new();
    for k in manufacturer_keys {
        let id = keys::decoded_key_id(&keys::key_id(k))?;
        delegations.keys.insert(id.clone(), k.clone());
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let pattern = PathPattern::new(manufacturer.path_pattern()).map_err(|e| Error::Schema {
        context: format!("path pattern for {manufacturer}"),
        source: Box::new(e),
    })?;
    let role = DelegatedRole {
        name: manufacturer.to_string(),
        keyids: ids,
        threshold: signing::threshold(manufacturer.as_str(), threshold)?,
        paths: PathSet::Paths(vec![pattern]),
        terminating: true,
        targets: None,
    };
    delegations
        .roles
        .retain(|r| r.name != manufacturer.as_str());
    delegations.roles.push(role);
    let used: Vec<_> = delegations
        .roles
        .iter()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    delegations.keys.retain(|id, _| used.contains(id));
    targets.delegations = Some(delegations);
    targets.version = next_version(targets.version);
    targets.expires = expiry_from_now(expiry)?;
    let version = targets.version.get();

    let root = state.root.signed;
    let role_keys = root_role_keys(&root, RoleType::Targets)?;
    let signed = sign_role(
        "targets",
        targets,
        &KeyHolder::Root(root),
        &role_keys,
        targets_signers,
    )
    .await?;
    layout::write_versioned(repo, "targets", version, signed.buffer())?;
    tracing::info!(manufacturer = %manufacturer, targets_version = version, "manufacturer delegated");
    Ok(version)
}

/// Re-signs the top-level targets (new version, new expiry) without other
/// changes; needed after the targets keys are rotated.
pub async fn resign_targets(
    repo: &RepoDir,
    targets_signers: &[SigningKey],
    expiry: Duration,
) -> Result<u64> {
    let state = RepoState::load(repo)?;
    let mut targets = state.targets.signed;
    targets.version = next_version(targets.version);
    targets.expires = expiry_from_now(expiry)?;
    let version = targets.version.get();
    let root = state.root.signed;
    let role_keys = root_role_keys(&root, RoleType::Targets)?;
    let signed = sign_role(
        "targets",
        targets,
        &KeyHolder::Root(root),
        &role_keys,
        targets_signers,
    )
    .await?;
    layout::write_versioned(repo, "targets", version, signed.buffer())?;
    Ok(version)
}
