//! `tuf-repo init`: a new repository.

use std::path::PathBuf;
use std::time::Duration;

use super::{duration_arg, load_public_keys, repo_dir, say, Context};
use crate::error::Result;
use crate::keys::SigningKey;
use crate::repo::init::{init, InitConfig, InitSigners, RoleSpec};
use crate::repo::Expiries;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repository directory to create.
    #[arg(long)]
    pub repo: PathBuf,
    /// Root private key files that sign now (repeat).
    #[arg(long, required = true)]
    pub root_key: Vec<PathBuf>,
    /// Extra root public keys that are trusted but do not sign now (repeat).
    #[arg(long)]
    pub root_pub: Vec<PathBuf>,
    /// Root threshold.
    #[arg(long, default_value_t = 1)]
    pub root_threshold: u64,
    /// Targets private key files (repeat).
    #[arg(long, required = true)]
    pub targets_key: Vec<PathBuf>,
    /// Targets threshold.
    #[arg(long, default_value_t = 1)]
    pub targets_threshold: u64,
    /// Snapshot private key files (repeat).
    #[arg(long, required = true)]
    pub snapshot_key: Vec<PathBuf>,
    /// Snapshot threshold.
    #[arg(long, default_value_t = 1)]
    pub snapshot_threshold: u64,
    /// Timestamp private key files (repeat).
    #[arg(long, required = true)]
    pub timestamp_key: Vec<PathBuf>,
    /// Timestamp threshold.
    #[arg(long, default_value_t = 1)]
    pub timestamp_threshold: u64,
    /// Root expiry.
    #[arg(long, default_value = "365d", value_parser = duration_arg)]
    pub root_expires: Duration,
    /// Targets expiry.
    #[arg(long, default_value = "182d", value_parser = duration_arg)]
    pub targets_expires: Duration,
    /// Snapshot expiry.
    #[arg(long, default_value = "7d", value_parser = duration_arg)]
    pub snapshot_expires: Duration,
    /// Timestamp expiry.
    #[arg(long, default_value = "1d", value_parser = duration_arg)]
    pub timestamp_expires: Duration,
}

fn spec(keys: &[SigningKey], extra: Vec<tough::schema::key::Key>, threshold: u64) -> RoleSpec {
    let mut all: Vec<_> = keys.iter().map(SigningKey::public_key).collect();
    all.extend(extra);
    RoleSpec {
        keys: all,
        threshold,
    }
}

/// Runs `init`.
pub async fn run(ctx: &Context, a: Args) -> Result<()> {
    let signers = InitSigners {
        root: ctx.load_keys(&a.root_key)?,
        targets: ctx.load_keys(&a.targets_key)?,
        snapshot: ctx.load_keys(&a.snapshot_key)?,
        timestamp: ctx.load_keys(&a.timestamp_key)?,
    };
    let cfg = InitConfig {
        root: spec(
            &signers.root,
            load_public_keys(ctx, &a.root_pub)?,
            a.root_threshold,
        ),
        targets: spec(&signers.targets, vec![], a.targets_threshold),
        snapshot: spec(&signers.snapshot, vec![], a.snapshot_threshold),
        timestamp: spec(&signers.timestamp, vec![], a.timestamp_threshold),
        expiries: Expiries {
            root: a.root_expires,
            targets: a.targets_expires,
            snapshot: a.snapshot_expires,
            timestamp: a.timestamp_expires,
            ..Expiries::default()
        },
    };
    init(&repo_dir(&a.repo), &cfg, &signers).await?;
    say(
        "init",
        format!(
            "repository created in {} (root v1, consistent snapshots on)",
            a.repo.display()
        ),
    );
    Ok(())
}
