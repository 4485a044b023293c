//! [`TrustedMetadata`]: one complete set of TUF metadata that tough verified
//! (root chain, timestamp, snapshot, targets, every manufacturer's delegated
//! role), and what the rest of the gateway asks of it: freshness, the roles'
//! versions and expiries, and target lookup.
//!
//! [`TrustedMetadata::entry`] is plain TUF lookup (the conformance client
//! uses it). [`TrustedMetadata::target`] is the gateway's firmware lookup: a
//! target `<manufacturer>/<file>` must be listed by the role delegated to
//! that manufacturer, carry the firmware `custom` fields `tuf-repo` writes
//! (`hardware_ids`, `version`, `min_version`), and comes with that role's
//! metadata exactly as the manufacturer signed it, which is what an
//! `OtaOffer` carries to the device for its own check.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tough::schema::{Signed, Targets};
use tough::TargetName;
use tuf_repo::firmware::FirmwareMeta;
use tuf_repo::TargetPath;
use url::Url;

use super::error::OtaError;
use super::transport::Fetched;

/// Converts tough's timestamps.
pub(crate) fn to_chrono(ts: jiff::Timestamp) -> DateTime<Utc> {
    let nanos = u32::try_from(ts.subsec_nanosecond()).unwrap_or(0);
    DateTime::from_timestamp(ts.as_second(), nanos).unwrap_or_default()
}

/// One role's version and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleStatus {
    /// `root`, `timestamp`, `snapshot`, `targets` or a delegated role
    /// (manufacturer) name.
    pub role: String,
    /// Metadata version.
    pub version: u64,
    /// When it expires.
    pub expires: DateTime<Utc>,
}

/// A target as plain TUF lookup finds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetEntry {
    /// The target name (path).
    pub name: String,
    /// Signed length in bytes.
    pub length: u64,
    /// Signed SHA-256, lowercase hex.
    pub sha256: String,
    /// The target's `custom` fields.
    pub custom: HashMap<String, Value>,
    /// Where the repository serves it (the TUF specification's consistent
    /// name, `<dir>/<sha256>.<file>`, when the repository uses consistent
    /// snapshots).
    pub url: Url,
}

/// A firmware image a manufacturer signed, with everything an offer needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetInfo {
    /// The target name, `<manufacturer>/<file>`.
    pub name: String,
    /// The manufacturer (delegated role) that signed it.
    pub manufacturer: String,
    /// Signed length in bytes.
    pub length: u64,
    /// Signed SHA-256, lowercase hex.
    pub sha256: String,
    /// The firmware fields of `custom` (version, hardware ids, min version).
    #[serde(skip)]
    pub firmware: FirmwareMeta,
    /// The raw `custom` map.
    pub custom: HashMap<String, Value>,
    /// Version of the manufacturer's role metadata.
    pub role_version: u64,
    /// Expiry of the manufacturer's role metadata.
    pub role_expires: DateTime<Utc>,
    /// The manufacturer's signed targets metadata, exactly as signed (for
    /// `protocol::OtaOffer::targets_metadata`).
    #[serde(skip)]
    pub targets_metadata: Arc<str>,
    /// Where the OTA server serves the image.
    pub url: Url,
}

/// A complete, verified set of TUF metadata.
#[derive(Debug)]
pub struct TrustedMetadata {
    repo: tough::Repository,
    /// Delegated role name -> its metadata as signed, or why it cannot be
    /// handed to devices.
    role_json: HashMap<String, Result<Arc<str>, String>>,
    targets_base: Url,
    expires: DateTime<Utc>,
    verified_at: DateTime<Utc>,
}

fn signature_pairs<T>(signed: &Signed<T>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = signed
        .signatures
        .iter()
        .map(|s| (hex::encode(&*s.keyid), hex::encode(&*s.sig)))
        .collect();
    v.sort();
    v
}

fn raw_signature_pairs(raw: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = raw
        .get("signatures")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s.get("keyid")?.as_str()?.to_ascii_lowercase(),
                        s.get("sig")?.as_str()?.to_ascii_lowercase(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The exact bytes of a delegated role among the fetched files: same
/// version and signatures as what tough verified, and a `signed` part that
/// is exactly what tough verified (nothing tough ignores, which a device
/// checking the raw bytes would refuse).
fn exact_role_json(
    role: &str,
    verified: &Signed<Targets>,
    fetched: &[Fetched],
) -> Result<Arc<str>, String> {
    let want_sigs = signature_pairs(verified);
    let want_signed = serde_json::to_value(&verified.signed)
        .map_err(|e| format!("cannot re-serialise the verified {role} metadata: {e}"))?;
    for f in fetched.iter().rev() {
        let Ok(raw) = serde_json::from_slice::<Value>(&f.bytes) else {
            continue;
        };
        if raw.pointer("/signed/_type").and_then(Value::as_str) != Some("targets")
            || raw.pointer("/signed/version").and_then(Value::as_u64)
                != Some(verified.signed.version.get())
            || raw_signature_pairs(&raw) != want_sigs
        {
            continue;
        }
        if raw.get("signed") != Some(&want_signed) {
            return Err(format!(
                "the {role} metadata holds fields or values tough does not verify; devices would refuse it, so the manufacturer must sign it again with `tuf-repo release`"
            ));
        }
        return String::from_utf8(f.bytes.clone())
            .map(Arc::from)
            .map_err(|_| format!("the {role} metadata is not UTF-8 text"));
    }
    Err(format!(
        "the signed {role} metadata bytes were not kept during the refresh; refresh again"
    ))
}

fn earliest_expiry(repo: &tough::Repository) -> DateTime<Utc> {
    let mut all = vec![
        repo.root().signed.expires,
        repo.timestamp().signed.expires,
        repo.snapshot().signed.expires,
        repo.targets().signed.expires,
    ];
    let mut stack: Vec<&Targets> = vec![&repo.targets().signed];
    while let Some(t) = stack.pop() {
        if let Some(d) = &t.delegations {
            for r in &d.roles {
                if let Some(signed) = &r.targets {
                    all.push(signed.signed.expires);
                    stack.push(&signed.signed);
                }
            }
        }
    }
    all.into_iter().min().map(to_chrono).unwrap_or_default()
}

fn target_err(name: &str, reason: impl Into<String>) -> OtaError {
    OtaError::Target {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

impl TrustedMetadata {
    /// Wraps a repository tough loaded; `fetched` are the exact bytes it
    /// fetched, `targets_base` where images are downloaded from.
    #[must_use]
    pub fn new(repo: tough::Repository, fetched: &[Fetched], targets_base: Url) -> Self {
        let mut role_json = HashMap::new();
        if let Some(d) = &repo.targets().signed.delegations {
            for r in &d.roles {
                if let Some(signed) = &r.targets {
                    role_json.insert(r.name.clone(), exact_role_json(&r.name, signed, fetched));
                }
            }
        }
        let expires = earliest_expiry(&repo);
        Self {
            repo,
            role_json,
            targets_base,
            expires,
            verified_at: Utc::now(),
        }
    }

    /// When the first of the loaded roles expires.
    #[must_use]
    pub fn expires(&self) -> DateTime<Utc> {
        self.expires
    }

    /// Whether every loaded role is still valid at `now`. No new rollout
    /// step may start on metadata that is not fresh.
    #[must_use]
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        now < self.expires
    }

    /// When this set was verified.
    #[must_use]
    pub fn verified_at(&self) -> DateTime<Utc> {
        self.verified_at
    }

    /// Whether the repository uses consistent snapshots.
    #[must_use]
    pub fn consistent_snapshot(&self) -> bool {
        self.repo.root().signed.consistent_snapshot
    }

    /// Version of the trusted snapshot (changes with every release).
    #[must_use]
    pub fn snapshot_version(&self) -> u64 {
        self.repo.snapshot().signed.version.get()
    }

    /// Every role's version and expiry, top-level roles first.
    #[must_use]
    pub fn roles(&self) -> Vec<RoleStatus> {
        let status = |role: &str, version: std::num::NonZeroU64, expires| RoleStatus {
            role: role.to_owned(),
            version: version.get(),
            expires: to_chrono(expires),
        };
        let r = &self.repo;
        let mut roles = vec![
            status("root", r.root().signed.version, r.root().signed.expires),
            status(
                "timestamp",
                r.timestamp().signed.version,
                r.timestamp().signed.expires,
            ),
            status(
                "snapshot",
                r.snapshot().signed.version,
                r.snapshot().signed.expires,
            ),
            status(
                "targets",
                r.targets().signed.version,
                r.targets().signed.expires,
            ),
        ];
        if let Some(d) = &r.targets().signed.delegations {
            for role in &d.roles {
                if let Some(t) = &role.targets {
                    roles.push(status(&role.name, t.signed.version, t.signed.expires));
                }
            }
        }
        roles
    }

    /// Every target name, sorted.
    #[must_use]
    pub fn target_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .repo
            .all_targets()
            .map(|(n, _)| n.raw().to_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn url_for(&self, name: &TargetName, sha256: &str) -> Result<Url, OtaError> {
        let resolved = name.resolved();
        let file = if self.consistent_snapshot() {
            match resolved.rsplit_once('/') {
                Some((dir, base)) => format!("{dir}/{sha256}.{base}"),
                None => format!("{sha256}.{resolved}"),
            }
        } else {
            resolved.to_owned()
        };
        let url = self
            .targets_base
            .join(&file)
            .map_err(|e| target_err(name.raw(), format!("cannot form its URL: {e}")))?;
        if !url.as_str().starts_with(self.targets_base.as_str()) {
            return Err(target_err(
                name.raw(),
                "its URL would leave the repository's targets directory",
            ));
        }
        Ok(url)
    }

    /// Plain TUF lookup of `name` (delegations followed as the TUF
    /// specification says).
    ///
    /// # Errors
    /// [`OtaError::Target`] if the name is unsafe or not listed.
    pub fn entry(&self, name: &str) -> Result<TargetEntry, OtaError> {
        let tn = TargetName::new(name.to_owned())
            .map_err(|e| target_err(name, format!("unsafe target name: {e}")))?;
        let t = self
            .repo
            .targets()
            .signed
            .find_target(&tn, false)
            .map_err(|_| {
                target_err(
                    name,
                    "not listed by the verified TUF metadata (or not by a role delegated its path)",
                )
            })?;
        let sha256 = hex::encode(&t.hashes.sha256);
        Ok(TargetEntry {
            name: name.to_owned(),
            length: t.length,
            url: self.url_for(&tn, &sha256)?,
            sha256,
            custom: t.custom.clone(),
        })
    }

    /// Firmware lookup of `<manufacturer>/<file>`.
    ///
    /// # Errors
    /// [`OtaError::Target`] naming why the target cannot be offered: not
    /// listed, not signed by that manufacturer's delegated role, invalid
    /// firmware fields, or its signed metadata is unusable by devices.
    pub fn target(&self, name: &str) -> Result<TargetInfo, OtaError> {
        let path = TargetPath::new(name).map_err(|e| target_err(name, e.to_string()))?;
        let manufacturer = path.manufacturer().as_str().to_owned();
        let entry = self.entry(name)?;
        let tn = TargetName::new(name.to_owned())
            .map_err(|e| target_err(name, format!("unsafe target name: {e}")))?;
        let top = &self.repo.targets().signed;
        if top.targets.contains_key(&tn) {
            return Err(target_err(
                name,
                "it is listed by the top-level targets role; firmware must be signed by its manufacturer's delegated role",
            ));
        }
        let role = top
            .delegations
            .as_ref()
            .and_then(|d| d.roles.iter().find(|r| r.name == manufacturer))
            .ok_or_else(|| {
                target_err(
                    name,
                    format!("no role is delegated to manufacturer {manufacturer}; the repository operator delegates it with `tuf-repo delegate`"),
                )
            })?;
        let signed = role.targets.as_ref().ok_or_else(|| {
            target_err(
                name,
                format!("manufacturer {manufacturer} has published no metadata"),
            )
        })?;
        let listed = signed.signed.targets.get(&tn).ok_or_else(|| {
            target_err(
                name,
                format!("it is not signed by manufacturer {manufacturer}'s delegated role"),
            )
        })?;
        if listed.length != entry.length || hex::encode(&listed.hashes.sha256) != entry.sha256 {
            return Err(target_err(
                name,
                format!("TUF lookup resolves it to another role than {manufacturer}'s"),
            ));
        }
        let firmware = FirmwareMeta::from_custom(name, &listed.custom)
            .map_err(|e| target_err(name, e.to_string()))?;
        let targets_metadata = match self.role_json.get(&manufacturer) {
            Some(Ok(json)) => Arc::clone(json),
            Some(Err(reason)) => return Err(target_err(name, reason.clone())),
            None => {
                return Err(target_err(
                    name,
                    format!("the signed metadata of {manufacturer} is not available"),
                ))
            }
        };
        Ok(TargetInfo {
            name: entry.name,
            manufacturer,
            length: entry.length,
            sha256: entry.sha256,
            firmware,
            custom: entry.custom,
            role_version: signed.signed.version.get(),
            role_expires: to_chrono(signed.signed.expires),
            targets_metadata,
            url: entry.url,
        })
    }
}
