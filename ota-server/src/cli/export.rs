//! `ota-server export --out <dir>`: writes the current repository as static
//! files for a CDN or mirror.

use std::path::Path;

use crate::config::ValidConfig;
use crate::error::Error;

/// Exports; returns (metadata files, target files).
///
/// # Errors
/// [`Error`] when the repository cannot be opened or written out.
pub fn run(cfg: &ValidConfig, out: &Path) -> Result<(usize, usize), Error> {
    let repo = crate::server::open_repository(cfg)?;
    Ok(crate::repo::export::export(&repo, out)?)
}
