//! Creating a new repository: root, an empty targets role that will only
//! delegate, and the first snapshot and timestamp.

use std::collections::HashMap;
use std::num::NonZeroU64;

use tough::schema::key::Key;
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root, Targets};

use super::layout::{self, RepoDir};
use super::signing::{self, root_role_keys, sign_role};
use super::{expiry_from_now, online, Expiries, SPEC_VERSION};
use crate::error::{Error, Result};
use crate::keys::{self, SigningKey};

/// The public keys and threshold of one top-level role.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    /// Public keys (TUF form) trusted for the role.
    pub keys: Vec<Key>,
    /// How many of them must sign.
    pub threshold: u64,
}

/// Everything `init` needs to know.
#[derive(Debug, Clone)]
pub struct InitConfig {
    /// Root keys (offline).
    pub root: RoleSpec,
    /// Top-level targets keys (offline; it only delegates).
    pub targets: RoleSpec,
    /// Snapshot keys (online).
    pub snapshot: RoleSpec,
    /// Timestamp keys (online).
    pub timestamp: RoleSpec,
    /// Expiry per role.
    pub expiries: Expiries,
}

/// The private keys used to sign the first version of each role.
#[derive(Debug, Clone, Default)]
pub struct InitSigners {
    /// Root keys (at least the root threshold).
    pub root: Vec<SigningKey>,
    /// Targets keys.
    pub targets: Vec<SigningKey>,
    /// Snapshot keys.
    pub snapshot: Vec<SigningKey>,
    /// Timestamp keys.
    pub timestamp: Vec<SigningKey>,
}

/// Builds a root (version 1 unless given) from role specs.
pub(crate) fn build_root(cfg: &InitConfig, version: NonZeroU64) -> Result<Root> {
    let mut root = Root {
        spec_version: SPEC_VERSION.to_owned(),
        consistent_snapshot: true,
        version,
        expires: expiry_from_now(cfg.expiries.root)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for (role, spec) in [
        (RoleType::Root, &cfg.root),
        (RoleType::Targets, &cfg.targets),
        (RoleType::Snapshot, &cfg.snapshot),
        (RoleType::Timestamp, &cfg.timestamp),
    ] {
        set_role_keys(&mut root, role, spec)?;
    }
    Ok(root)
}

/// Replaces a role's keys in `root`, adding the keys to the key map and
/// dropping keys no role uses any more.
pub(crate) fn set_role_keys(root: &mut Root, role: RoleType, spec: &RoleSpec) -> Result<()> {
    let name = role.to_string();
    if spec.keys.is_empty() {
        return Err(Error::InvalidArgument {
            what: "role keys",
            reason: format!("role '{name}' needs at least one key"),
        });
    }
    if spec.threshold > spec.keys.len() as u64 {
        return Err(Error::InvalidArgument {
            what: "threshold",
            reason: format!(
                "role '{name}' has {} key(s) but a threshold of {}; it could never be signed",
                spec.keys.len(),
                spec.threshold
            ),
        });
    }
    let mut ids = Vec::new();
    for k in &spec.keys {
        let id = keys::decoded_key_id(&keys::key_id(k))?;
        root.keys.insert(id.clone(), k.clone());
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    root.roles.insert(
        role,
        RoleKeys {
            keyids: ids,
            threshold: signing::threshold(&name, spec.threshold)?,
            _extra: HashMap::new(),
        },
    );
    let used: Vec<_> = root
        .roles
        .values()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    root.keys.retain(|id, _| used.contains(id));
    Ok(())
}

/// Creates a new repository in `repo` (its `metadata/` must not hold a root
/// yet): `1.root.json`, `1.targets.json` (no targets, no delegations yet),
/// `1.snapshot.json` and `timestamp.json`, all signed by `signers`.
pub async fn init(repo: &RepoDir, cfg: &InitConfig, signers: &InitSigners) -> Result<()> {
    if repo.metadata_file("root.json").exists() {
        return Err(Error::InvalidArgument {
            what: "repository",
            reason: format!(
                "{} already has a root; use `tuf-repo rotate` to change keys",
                repo.path().display()
            ),
        });
    }
    let one = NonZeroU64::MIN;
    let root = build_root(cfg, one)?;
    let holder = KeyHolder::Root(root.clone());

    let root_keys = root_role_keys(&root, RoleType::Root)?;
    let signed_root = sign_role("root", root.clone(), &holder, &root_keys, &signers.root).await?;

    let targets = Targets {
        spec_version: SPEC_VERSION.to_owned(),
        version: one,
        expires: expiry_from_now(cfg.expiries.targets)?,
        targets: HashMap::new(),
        delegations: Some(tough::schema::Delegations::new()),
        _extra: HashMap::new(),
    };
    let targets_keys = root_role_keys(&root, RoleType::Targets)?;
    let signed_targets =
        sign_role("targets", targets, &holder, &targets_keys, &signers.targets).await?;

    repo.create_dirs()?;
    layout::write_versioned(repo, "root", 1, signed_root.buffer())?;
    layout::write_versioned(repo, "targets", 1, signed_targets.buffer())?;
    online::snapshot(repo, &signers.snapshot, cfg.expiries.snapshot).await?;
    online::refresh_timestamp(repo, &signers.timestamp, cfg.expiries.timestamp).await?;
    tracing::info!(repo = %repo.path().display(), "repository initialised");
    Ok(())
}
