//! `tuf-repo delegate`: give a manufacturer `<manufacturer>/*`.

use std::path::PathBuf;
use std::time::Duration;

use super::{duration_arg, load_public_keys, repo_dir, say, Context, ManufacturerRepo};
use crate::error::Result;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository and the manufacturer to delegate to.
    #[command(flatten)]
    pub role: ManufacturerRepo,
    /// The manufacturer's public key files (repeat).
    #[arg(long = "manufacturer-key", required = true)]
    pub manufacturer_keys: Vec<PathBuf>,
    /// How many manufacturer keys must sign a release.
    #[arg(long, default_value_t = 1)]
    pub threshold: u64,
    /// Top-level targets private key files (repeat).
    #[arg(long = "targets-key", required = true)]
    pub targets_keys: Vec<PathBuf>,
    /// The manufacturer's enrolment (from `tuf-repo enrol`): its empty role,
    /// signed with its keys; published as the role's first version.
    #[arg(long)]
    pub enrolment: Option<PathBuf>,
    /// Expiry of the new targets metadata.
    #[arg(long, default_value = "182d", value_parser = duration_arg)]
    pub expires: Duration,
}

/// Runs `delegate`.
pub async fn run(ctx: &Context, a: Args) -> Result<()> {
    let keys = load_public_keys(ctx, &a.manufacturer_keys)?;
    let signers = ctx.load_keys(&a.targets_keys)?;
    let enrolment = match &a.enrolment {
        Some(p) => Some(std::fs::read(p).map_err(|e| crate::error::Error::io("reading", p, e))?),
        None => None,
    };
    let v = crate::repo::delegate::delegate(
        &repo_dir(&a.role.repo),
        &a.role.manufacturer,
        &keys,
        a.threshold,
        &signers,
        a.expires,
        enrolment.as_deref(),
    )
    .await?;
    say(
        "delegate",
        format!(
            "{}/* -> role '{}' ({} key(s), threshold {}), targets v{v}; run `snapshot` and `timestamp` to publish",
            a.role.manufacturer,
            a.role.manufacturer,
            keys.len(),
            a.threshold
        ),
    );
    Ok(())
}
