//! Authoring operations on a repository directory.
//!
//! Each operation reads the newest metadata from disk ([`RepoState`]),
//! builds the next version with tough's schema types, signs it through
//! `tough::editor` (the private `signing` module) and writes it next to the old one
//! ([`layout`]). Submodules: [`init`] (new repository), [`delegate`]
//! (manufacturer roles), [`release`] (the manufacturer's side), [`publish`]
//! (the OTA server's checks and new repository version), [`online`]
//! (snapshot and timestamp), [`rotate`] (new root versions).

pub mod delegate;
pub mod init;
pub mod layout;
pub mod online;
pub mod publish;
pub mod release;
pub mod rotate;
pub(crate) mod signing;

use std::collections::BTreeMap;
use std::time::Duration;

use tough::schema::{Root, Signed, Snapshot, Targets, Timestamp};

pub use layout::RepoDir;

use crate::error::{Error, Result};
use crate::target_name::ManufacturerName;

/// The TUF specification version we write.
pub const SPEC_VERSION: &str = "1.0.0";

/// How long each role's metadata stays valid after it is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiries {
    /// Root (offline; long).
    pub root: Duration,
    /// Top-level targets (offline).
    pub targets: Duration,
    /// Manufacturer (delegated targets) roles.
    pub delegated: Duration,
    /// Snapshot (online).
    pub snapshot: Duration,
    /// Timestamp (online; short, refreshed every few minutes).
    pub timestamp: Duration,
}

impl Default for Expiries {
    /// Root 1 year, targets 6 months, delegated 6 months, snapshot 7 days,
    /// timestamp 1 day.
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            root: Duration::from_secs(365 * DAY),
            targets: Duration::from_secs(182 * DAY),
            delegated: Duration::from_secs(182 * DAY),
            snapshot: Duration::from_secs(7 * DAY),
            timestamp: Duration::from_secs(DAY),
        }
    }
}

/// `now + d`, truncated to whole seconds (python-tuf refuses fractions).
pub fn expiry_from_now(d: Duration) -> Result<jiff::Timestamp> {
    let now = jiff::Timestamp::now().as_second();
    let secs = i64::try_from(d.as_secs()).map_err(|_| Error::InvalidArgument {
        what: "expiry",
        reason: "too far in the future".into(),
    })?;
    jiff::Timestamp::from_second(now.saturating_add(secs)).map_err(|e| Error::InvalidArgument {
        what: "expiry",
        reason: e.to_string(),
    })
}

/// Parses a duration such as `30s`, `15m`, `12h`, `7d`, `52w`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::InvalidArgument {
        what: "duration",
        reason: format!("{s:?} is not <number><s|m|h|d|w>, e.g. 7d"),
    };
    let s = s.trim();
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(unit_at);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).map(Duration::from_secs).ok_or_else(bad)
}

/// The newest metadata of every role, as found on disk.
#[derive(Debug, Clone)]
pub struct RepoState {
    /// Newest root.
    pub root: Signed<Root>,
    /// Newest top-level targets.
    pub targets: Signed<Targets>,
    /// Newest snapshot, if one was written.
    pub snapshot: Option<Signed<Snapshot>>,
    /// Current timestamp, if one was written.
    pub timestamp: Option<Signed<Timestamp>>,
    /// Newest metadata of each delegated role that has published.
    pub delegated: BTreeMap<String, Signed<Targets>>,
}

impl RepoState {
    /// Reads the newest metadata from `repo`. Malformed or truncated files
    /// are [`Error::Json`] naming the file.
    pub fn load(repo: &RepoDir) -> Result<Self> {
        let root = layout::read_root(repo)?;
        let (targets, _): (Signed<Targets>, _) =
            layout::read_metadata(repo, "targets.json", "targets metadata")?;
        let snapshot = layout::read_optional(repo, "snapshot.json", "snapshot metadata")?;
        let timestamp = layout::read_optional(repo, "timestamp.json", "timestamp metadata")?;
        let mut delegated = BTreeMap::new();
        if let Some(d) = &targets.signed.delegations {
            for role in &d.roles {
                let name = ManufacturerName::new(role.name.clone())?;
                let file = format!("{name}.json");
                if let Some(t) = layout::read_optional::<Signed<Targets>>(
                    repo,
                    &file,
                    "delegated targets metadata",
                )? {
                    delegated.insert(name.to_string(), t);
                }
            }
        }
        Ok(Self {
            root,
            targets,
            snapshot,
            timestamp,
            delegated,
        })
    }

    /// The delegation entry for `manufacturer` in the top-level targets.
    pub fn delegation(
        &self,
        manufacturer: &ManufacturerName,
    ) -> Result<&tough::schema::DelegatedRole> {
        self.targets
            .signed
            .delegations
            .as_ref()
            .and_then(|d| d.roles.iter().find(|r| r.name == manufacturer.as_str()))
            .ok_or_else(|| Error::UnknownRole {
                role: manufacturer.to_string(),
                hint: "the operator must first run `tuf-repo delegate` for this manufacturer",
            })
    }
}

/// The next version after `v`.
pub(crate) fn next_version(v: std::num::NonZeroU64) -> std::num::NonZeroU64 {
    v.checked_add(1).unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("7y").is_err());
        assert!(parse_duration("99999999999999999999w").is_err());
    }
}
