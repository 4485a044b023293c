//! `tuf-repo rotate`: a new root version with replaced keys for a role.

use std::path::PathBuf;
use std::time::Duration;

use super::{duration_arg, load_public_keys, repo_dir, say, Context};
use crate::error::{Error, Result};
use crate::repo::init::RoleSpec;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// Role whose keys change: root, targets, snapshot or timestamp.
    #[arg(long)]
    pub role: String,
    /// The role's new public (or private) key files (repeat).
    #[arg(long = "new-key", required = true)]
    pub new_keys: Vec<PathBuf>,
    /// The role's new threshold.
    #[arg(long, default_value_t = 1)]
    pub threshold: u64,
    /// Root private key files that sign: a threshold of the old root keys and
    /// a threshold of the new root keys (repeat).
    #[arg(long = "root-key", required = true)]
    pub root_keys: Vec<PathBuf>,
    /// After rotating targets, snapshot or timestamp: the role's new private
    /// key files, to re-sign that role at once (and, for targets and
    /// snapshot, leave snapshot and timestamp to the online keys).
    #[arg(long = "resign-key")]
    pub resign_keys: Vec<PathBuf>,
    /// Expiry of the new root.
    #[arg(long, default_value = "365d", value_parser = duration_arg)]
    pub expires: Duration,
}

/// Runs `rotate`.
pub async fn run(ctx: &Context, a: Args) -> Result<()> {
    let role = match a.role.as_str() {
        "root" => tough::schema::RoleType::Root,
        "targets" => tough::schema::RoleType::Targets,
        "snapshot" => tough::schema::RoleType::Snapshot,
        "timestamp" => tough::schema::RoleType::Timestamp,
        other => {
            return Err(Error::InvalidArgument {
                what: "role",
                reason: format!("{other:?} is not root, targets, snapshot or timestamp"),
            })
        }
    };
    let spec = RoleSpec {
        keys: load_public_keys(ctx, &a.new_keys)?,
        threshold: a.threshold,
    };
    let signers = ctx.load_keys(&a.root_keys)?;
    let repo = repo_dir(&a.repo);
    let v = crate::repo::rotate::rotate(&repo, role, &spec, &signers, a.expires).await?;
    let resigned = if a.resign_keys.is_empty() {
        None
    } else {
        let keys = ctx.load_keys(&a.resign_keys)?;
        let ex = crate::repo::Expiries::default();
        Some(match role {
            tough::schema::RoleType::Targets => {
                let tv = crate::repo::delegate::resign_targets(&repo, &keys, ex.targets).await?;
                format!("targets v{tv}; now run `snapshot` and `timestamp`")
            }
            tough::schema::RoleType::Snapshot => {
                let s = crate::repo::online::snapshot(&repo, &keys, ex.snapshot).await?;
                format!("snapshot v{}; now run `timestamp`", s.version)
            }
            tough::schema::RoleType::Timestamp => {
                let s = crate::repo::online::refresh_timestamp(&repo, &keys, ex.timestamp).await?;
                format!("timestamp v{}", s.version)
            }
            _ => {
                return Err(Error::InvalidArgument {
                    what: "--resign-key",
                    reason: "only for targets, snapshot or timestamp rotations".into(),
                })
            }
        })
    };
    let next = match role {
        tough::schema::RoleType::Targets => {
            "; clients refuse targets until it is re-signed with the new key (pass --resign-key, or re-run `delegate`), then run `snapshot` and `timestamp`"
        }
        tough::schema::RoleType::Snapshot => {
            "; now run `snapshot` and `timestamp` with the new key"
        }
        tough::schema::RoleType::Timestamp => "; now run `timestamp` with the new key",
        _ => "",
    };
    let next = if resigned.is_some() { "" } else { next };
    say(
        "rotate",
        format!(
            "root v{v}: '{}' has {} key(s), threshold {}{next}",
            a.role,
            spec.keys.len(),
            a.threshold
        ),
    );
    if let Some(what) = resigned {
        say("resign", format!("{what} signed with the new key(s)"));
    }
    Ok(())
}
