//! `tuf-repo snapshot`: re-sign the snapshot with the online key.

use std::path::PathBuf;
use std::time::Duration;

use super::{duration_arg, repo_dir, say, Context};
use crate::error::Result;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// Snapshot private key files.
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Expiry.
    #[arg(long, default_value = "7d", value_parser = duration_arg)]
    pub expires: Duration,
}

/// Runs `snapshot`.
pub async fn run(ctx: &Context, a: Args) -> Result<()> {
    let keys = ctx.load_keys(&a.keys)?;
    let s = crate::repo::online::snapshot(&repo_dir(&a.repo), &keys, a.expires).await?;
    say("snapshot", format!("v{} expires {}", s.version, s.expires));
    Ok(())
}
