//! `tuf-repo snapshot` and `tuf-repo timestamp`: re-sign an online role.
//!
//! The two commands take the same arguments and differ only in the role
//! they re-sign and its default expiry, so they share one `Args` and one
//! `run`.

use std::path::PathBuf;
use std::time::Duration;

use super::{duration_arg, repo_dir, say, Context};
use crate::error::Result;
use crate::repo::Expiries;

/// The online role a command re-signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnlineRole {
    /// `snapshot.json`, with the online snapshot key.
    Snapshot,
    /// `timestamp.json`, with the online timestamp key.
    Timestamp,
}

impl OnlineRole {
    /// The role's name, as the progress line prints it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Timestamp => "timestamp",
        }
    }

    /// The expiry used without `--expires`: the library's default for the
    /// role (7 days for the snapshot, 1 day for the timestamp).
    #[must_use]
    pub fn default_expiry(self) -> Duration {
        let defaults = Expiries::default();
        match self {
            Self::Snapshot => defaults.snapshot,
            Self::Timestamp => defaults.timestamp,
        }
    }
}

/// Arguments of `snapshot` and `timestamp`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// The role's private key files (snapshot or timestamp keys).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Expiry (default: 7d for `snapshot`, 1d for `timestamp`).
    #[arg(long, value_parser = duration_arg)]
    pub expires: Option<Duration>,
}

/// Runs `snapshot` or `timestamp`, as `role` says.
pub async fn run(ctx: &Context, role: OnlineRole, a: Args) -> Result<()> {
    let keys = ctx.load_keys(&a.keys)?;
    let repo = repo_dir(&a.repo);
    let expires = a.expires.unwrap_or_else(|| role.default_expiry());
    let s = match role {
        OnlineRole::Snapshot => crate::repo::online::snapshot(&repo, &keys, expires).await?,
        OnlineRole::Timestamp => {
            crate::repo::online::refresh_timestamp(&repo, &keys, expires).await?
        }
    };
    say(role.name(), format!("v{} expires {}", s.version, s.expires));
    Ok(())
}
