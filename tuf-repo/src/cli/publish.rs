//! `tuf-repo publish`: the server-side check and publish of an upload
//! bundle, for operators without the OTA server (and for the demo).

use std::path::PathBuf;
use std::time::Duration;

use super::{duration_arg, repo_dir, say, Context, ManufacturerRepo};
use crate::error::{Error, Result};
use crate::repo::publish::{check_upload, publish, read_bundle, OnlineKeys};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The current repository and the manufacturer the bundle claims to be
    /// from.
    #[command(flatten)]
    pub role: ManufacturerRepo,
    /// The upload bundle directory written by `release`.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Snapshot private key files.
    #[arg(long = "snapshot-key", required = true)]
    pub snapshot_keys: Vec<PathBuf>,
    /// Timestamp private key files.
    #[arg(long = "timestamp-key", required = true)]
    pub timestamp_keys: Vec<PathBuf>,
    /// Snapshot expiry.
    #[arg(long, default_value = "7d", value_parser = duration_arg)]
    pub snapshot_expires: Duration,
    /// Timestamp expiry.
    #[arg(long, default_value = "1d", value_parser = duration_arg)]
    pub timestamp_expires: Duration,
    /// Write the new version here (absent or empty). Without it, the new
    /// version replaces `--repo` (written beside it, then swapped by rename).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `publish`.
pub async fn run(ctx: &Context, a: Args) -> Result<()> {
    let online = OnlineKeys {
        snapshot: ctx.load_keys(&a.snapshot_keys)?,
        timestamp: ctx.load_keys(&a.timestamp_keys)?,
    };
    let ManufacturerRepo {
        repo: repo_path,
        manufacturer,
    } = &a.role;
    let repo = repo_dir(repo_path);
    let upload = read_bundle(&a.bundle, manufacturer)?;
    let checked = check_upload(&repo, &upload).await?;
    let staging = match &a.out {
        Some(o) => o.clone(),
        None => sibling(repo_path, "new")?,
    };
    let published = publish(
        &repo,
        &checked,
        &online,
        a.snapshot_expires,
        a.timestamp_expires,
        &staging,
    )
    .await?;
    if a.out.is_none() {
        let old = sibling(repo_path, "old")?;
        std::fs::rename(repo_path, &old).map_err(|e| Error::io("moving aside", repo_path, e))?;
        std::fs::rename(&staging, repo_path).map_err(|e| Error::io("swapping in", &staging, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io("removing", &old, e))?;
    }
    let names: Vec<String> = published
        .new_targets
        .iter()
        .map(ToString::to_string)
        .collect();
    say(
        "publish",
        format!(
            "'{}' v{} with [{}]; snapshot v{}, timestamp v{}",
            manufacturer,
            published.role.version,
            names.join(", "),
            published.snapshot.version,
            published.timestamp.version
        ),
    );
    Ok(())
}

fn sibling(repo: &std::path::Path, suffix: &str) -> Result<PathBuf> {
    let name = repo.file_name().ok_or_else(|| Error::InvalidArgument {
        what: "repository",
        reason: format!("{} has no directory name", repo.display()),
    })?;
    let mut n = name.to_os_string();
    n.push(format!(".{suffix}-{}", std::process::id()));
    Ok(repo.with_file_name(n))
}
