//! `tuf-repo release`: the manufacturer signs a firmware image.

use std::path::PathBuf;
use std::time::Duration;

use super::{duration_arg, repo_dir, say, Context};
use crate::error::{Error, Result};
use crate::firmware::FirmwareMeta;
use crate::repo::release::{release, ReleaseRequest};
use crate::target_name::ManufacturerName;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A copy of the repository (its metadata is read, not written).
    #[arg(long)]
    pub repo: PathBuf,
    /// The manufacturer's role.
    #[arg(long)]
    pub manufacturer: ManufacturerName,
    /// The manufacturer's private key files (repeat up to its threshold).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// The firmware image.
    #[arg(long)]
    pub image: PathBuf,
    /// Target name: `<manufacturer>/<file>`, or just `<file>` (default: the
    /// image's file name under the manufacturer).
    #[arg(long)]
    pub name: Option<String>,
    /// Hardware ids this image is for (repeat).
    #[arg(long = "hardware-id", required = true)]
    pub hardware_ids: Vec<String>,
    /// Firmware version (semver).
    #[arg(long)]
    pub version: semver::Version,
    /// Lowest installed version this image may update from (semver).
    #[arg(long)]
    pub min_version: Option<semver::Version>,
    /// Release notes.
    #[arg(long)]
    pub notes: Option<String>,
    /// Expiry of the role metadata.
    #[arg(long, default_value = "182d", value_parser = duration_arg)]
    pub expires: Duration,
    /// Upload bundle directory to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `release`.
pub async fn run(ctx: &Context, a: Args) -> Result<()> {
    let keys = ctx.load_keys(&a.keys)?;
    let file = match &a.name {
        Some(n) => n.clone(),
        None => a
            .image
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::InvalidArgument {
                what: "image",
                reason: "the image path has no UTF-8 file name; give --name".into(),
            })?,
    };
    let target = if file.contains('/') || file.contains('\\') {
        file
    } else {
        format!("{}/{file}", a.manufacturer)
    };
    let req = ReleaseRequest {
        manufacturer: a.manufacturer.clone(),
        target,
        image: a.image.clone(),
        firmware: FirmwareMeta::new(a.hardware_ids, a.version, a.min_version, a.notes)?,
        expiry: a.expires,
    };
    let bundle = release(&repo_dir(&a.repo), &req, &keys, &a.out).await?;
    say(
        "release",
        format!(
            "{} ({} bytes, sha256 {}) signed into '{}' v{}; upload bundle: {}",
            bundle.target,
            bundle.digest.length,
            bundle.digest.sha256_hex(),
            a.manufacturer,
            bundle.role_version,
            bundle.dir.display()
        ),
    );
    Ok(())
}
