//! Delegating a manufacturer's path scope from the top-level targets role.
//!
//! The top-level targets role lists no targets of its own: it only names,
//! for each manufacturer `M`, the keys and threshold of a delegated role `M`
//! trusted for `M/*`. Re-delegating an existing manufacturer replaces its
//! keys (key rotation for a manufacturer).
//!
//! Enrolment: tough 0.24 stops walking the delegation list at the first
//! delegated role that has no metadata in the snapshot, so one manufacturer
//! that never published would hide every manufacturer delegated after it from
//! tough clients (the gateway's OTA agent). To avoid that, a manufacturer
//! first signs an empty role with [`enrol`] (which also proves it holds the
//! key) and the operator passes it to [`delegate`], which publishes it as the
//! role's version 1. [`delegate`] without an enrolment still works and
//! logs a warning.

use std::time::Duration;

use tough::editor::signed::SignedRole;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{
    DelegatedRole, Delegations, KeyHolder, PathPattern, PathSet, RoleType, Root, Targets,
};

use super::layout::{self, RepoDir};
use super::signing::{self, sign_role, sign_under_root};
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
    enrolment: Option<&[u8]>,
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
    let role = manufacturer_role(manufacturer, ids, threshold)?;
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
    let enrolment = match enrolment {
        Some(bytes) => Some(check_enrolment(manufacturer, &delegations, bytes, &state)?),
        None => {
            if !state.delegated.contains_key(manufacturer.as_str()) {
                tracing::warn!(
                    manufacturer = %manufacturer,
                    "delegated without an enrolment: until it publishes, tough clients will not see manufacturers delegated after it"
                );
            }
            None
        }
    };
    targets.delegations = Some(delegations);
    let (version, signed) =
        next_targets(state.root.signed, targets, targets_signers, expiry).await?;
    if let Some((v, bytes)) = enrolment {
        layout::write_versioned(repo, manufacturer.as_str(), v, bytes)?;
    }
    layout::write_versioned(repo, "targets", version, signed.buffer())?;
    tracing::info!(manufacturer = %manufacturer, targets_version = version, "manufacturer delegated");
    Ok(version)
}

/// The next version of the top-level `targets` (version bumped, expiring
/// `expiry` from now), signed by `signers` under `root`'s targets keys.
async fn next_targets(
    root: Root,
    mut targets: Targets,
    signers: &[SigningKey],
    expiry: Duration,
) -> Result<(u64, SignedRole<Targets>)> {
    targets.version = next_version(targets.version);
    targets.expires = expiry_from_now(expiry)?;
    let version = targets.version.get();
    let signed = sign_under_root("targets", RoleType::Targets, targets, root, signers).await?;
    Ok((version, signed))
}

/// Re-signs the top-level targets (new version, new expiry) without other
/// changes; needed after the targets keys are rotated.
pub async fn resign_targets(
    repo: &RepoDir,
    targets_signers: &[SigningKey],
    expiry: Duration,
) -> Result<u64> {
    let state = RepoState::load(repo)?;
    let (version, signed) = next_targets(
        state.root.signed,
        state.targets.signed,
        targets_signers,
        expiry,
    )
    .await?;
    layout::write_versioned(repo, "targets", version, signed.buffer())?;
    Ok(version)
}

/// Checks an enrolment (an empty role signed by the manufacturer's keys)
/// against the new delegation; returns its version and bytes.
fn check_enrolment<'a>(
    manufacturer: &ManufacturerName,
    delegations: &Delegations,
    bytes: &'a [u8],
    state: &RepoState,
) -> Result<(u64, &'a [u8])> {
    let path = std::path::PathBuf::from(format!("<enrolment>/{manufacturer}.json"));
    let role: tough::schema::Signed<tough::schema::Targets> =
        layout::parse_signed_strict(bytes, &path, "manufacturer enrolment")?;
    let role_keys = delegations
        .roles
        .iter()
        .find(|r| r.name == manufacturer.as_str())
        .map(DelegatedRole::keys)
        .ok_or_else(|| Error::UnknownRole {
            role: manufacturer.to_string(),
            hint: "internal: delegation missing",
        })?;
    let valid = signing::count_valid(&role, &role_keys, &delegations.keys);
    if valid < role_keys.threshold.get() {
        return Err(Error::ThresholdNotMet {
            role: manufacturer.to_string(),
            threshold: role_keys.threshold.get(),
            valid,
        });
    }
    if !role.signed.targets.is_empty() {
        return Err(Error::InvalidArgument {
            what: "enrolment",
            reason: "an enrolment lists no targets; ship images with `release` and the OTA server"
                .into(),
        });
    }
    if let Some(published) = state.delegated.get(manufacturer.as_str()) {
        if role.signed.version <= published.signed.version {
            return Err(Error::MetadataRollback {
                role: manufacturer.to_string(),
                published: published.signed.version.get(),
                offered: role.signed.version.get(),
            });
        }
    }
    Ok((role.signed.version.get(), bytes))
}

/// The manufacturer's side of enrolment: an empty role (version 1, no
/// targets) signed with its `keys`, to hand to the operator with the public
/// keys. `threshold` is the threshold the operator will set.
pub async fn enrol(
    manufacturer: &ManufacturerName,
    keys: &[SigningKey],
    threshold: u64,
    expiry: Duration,
) -> Result<Vec<u8>> {
    let mut delegations = Delegations::new();
    let mut ids = Vec::new();
    for k in keys {
        let id = keys::decoded_key_id(k.key_id())?;
        delegations.keys.insert(id.clone(), k.public_key());
        ids.push(id);
    }
    let role = manufacturer_role(manufacturer, ids, threshold)?;
    let role_keys = role.keys();
    delegations.roles.push(role);
    let mut targets = tough::schema::Targets::new(
        super::SPEC_VERSION.to_owned(),
        std::num::NonZeroU64::MIN,
        expiry_from_now(expiry)?,
    );
    targets.delegations = None;
    let body = tough::schema::DelegatedTargets {
        name: manufacturer.to_string(),
        targets,
    };
    let signed = sign_role(
        manufacturer.as_str(),
        body,
        &KeyHolder::Delegations(delegations),
        &role_keys,
        keys,
    )
    .await?;
    Ok(signed.buffer().clone())
}

/// The delegated role of `manufacturer`: its keys and threshold, scoped to
/// `<manufacturer>/*`, terminating (no other role may sign its paths).
fn manufacturer_role(
    manufacturer: &ManufacturerName,
    keyids: Vec<Decoded<Hex>>,
    threshold: u64,
) -> Result<DelegatedRole> {
    let pattern = PathPattern::new(manufacturer.path_pattern()).map_err(|e| Error::Schema {
        context: format!("path pattern for {manufacturer}"),
        source: Box::new(e),
    })?;
    Ok(DelegatedRole {
        name: manufacturer.to_string(),
        keyids,
        threshold: signing::threshold(manufacturer.as_str(), threshold)?,
        paths: PathSet::Paths(vec![pattern]),
        terminating: true,
        targets: None,
    })
}
