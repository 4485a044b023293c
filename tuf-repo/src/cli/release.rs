//! `tuf-repo release`: the manufacturer signs a firmware image.

use std::path::PathBuf;

use super::{repo_dir, say, Context, ManufacturerRepo, ManufacturerSigning};
use crate::error::{Error, Result};
use crate::firmware::FirmwareMeta;
use crate::repo::release::{release, ReleaseRequest};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A copy of the repository (its metadata is read, not written) and
    /// the manufacturer's role.
    #[command(flatten)]
    pub role: ManufacturerRepo,
    /// The manufacturer's keys and the expiry of the role version.
    #[command(flatten)]
    pub signing: ManufacturerSigning,
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
    /// Upload bundle directory to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `release`.
pub async fn run(ctx: &Context, a: Args) -> Result<()> {
    let keys = a.signing.load_keys(ctx)?;
    let ManufacturerRepo { repo, manufacturer } = &a.role;
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
        format!("{manufacturer}/{file}")
    };
    let req = ReleaseRequest {
        manufacturer: manufacturer.clone(),
        target,
        image: a.image.clone(),
        firmware: FirmwareMeta::new(a.hardware_ids, a.version, a.min_version, a.notes)?,
        expiry: a.signing.expires,
    };
    let bundle = release(&repo_dir(repo), &req, &keys, &a.out).await?;
    say(
        "release",
        format!(
            "{} ({} bytes, sha256 {}) signed into '{}' v{}; upload bundle: {}",
            bundle.target,
            bundle.digest.length,
            bundle.digest.sha256_hex(),
            manufacturer,
            bundle.role_version,
            bundle.dir.display()
        ),
    );
    Ok(())
}
