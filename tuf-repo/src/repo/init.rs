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
use crate::target_name::ManufacturerName;

/// The public keys and threshold of one top-level role.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    /// Public keys (TUF form) trusted for the role.
    pub keys: Vec<Key>,
    /// How many of them must sign.
    pub threshold: u64,
}

impl RoleSpec {
    /// A role trusting `key` alone (threshold 1).
    #[must_use]
    pub fn single(key: &SigningKey) -> Self {
        Self {
            keys: vec![key.public_key()],
            threshold: 1,
        }
    }
}

/// One key for each top-level role, each role with threshold 1: the
/// smallest repository (a test, a demo, a lab). [`OneKeyPerRole::config`]
/// and [`OneKeyPerRole::signers`] are what [`init`] takes for it.
#[derive(Debug, Clone)]
pub struct OneKeyPerRole {
    /// The root key.
    pub root: SigningKey,
    /// The top-level targets key.
    pub targets: SigningKey,
    /// The snapshot key.
    pub snapshot: SigningKey,
    /// The timestamp key.
    pub timestamp: SigningKey,
}

impl OneKeyPerRole {
    /// Four new keys.
    #[must_use]
    pub fn generate() -> Self {
        Self {
            root: SigningKey::generate(),
            targets: SigningKey::generate(),
            snapshot: SigningKey::generate(),
            timestamp: SigningKey::generate(),
        }
    }

    /// The roles, each trusting its one key, with `expiries`.
    #[must_use]
    pub fn config(&self, expiries: Expiries) -> InitConfig {
        InitConfig {
            root: RoleSpec::single(&self.root),
            targets: RoleSpec::single(&self.targets),
            snapshot: RoleSpec::single(&self.snapshot),
            timestamp: RoleSpec::single(&self.timestamp),
            expiries,
        }
    }

    /// Each role's key, to sign its first version.
    #[must_use]
    pub fn signers(&self) -> InitSigners {
        InitSigners {
            root: vec![self.root.clone()],
            targets: vec![self.targets.clone()],
            snapshot: vec![self.snapshot.clone()],
            timestamp: vec![self.timestamp.clone()],
        }
    }

    /// Both sides of a delegation where one party holds every key: the
    /// manufacturer enrols with `manufacturer_key` (threshold 1) and the
    /// targets key delegates `<manufacturer>/*` to it with that enrolment;
    /// the new targets version, as [`super::delegate::delegate`] returns
    /// it. Run `snapshot` and `timestamp` afterwards to publish it.
    ///
    /// # Errors
    /// As [`super::delegate::enrol`] and [`super::delegate::delegate`].
    pub async fn delegate_to(
        &self,
        repo: &RepoDir,
        manufacturer: &ManufacturerName,
        manufacturer_key: &SigningKey,
        expiries: &Expiries,
    ) -> Result<u64> {
        let signer = std::slice::from_ref(manufacturer_key);
        let enrolment = super::delegate::enrol(manufacturer, signer, 1, expiries.delegated).await?;
        super::delegate::delegate(
            repo,
            manufacturer,
            &[manufacturer_key.public_key()],
            1,
            std::slice::from_ref(&self.targets),
            expiries.targets,
            Some(&enrolment),
        )
        .await
    }
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
