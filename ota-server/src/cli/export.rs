//! `ota-server export --out <dir>`: writes the current repository as static
//! files for a CDN or mirror.

use std::path::{Path, PathBuf};

use crate::config::ValidConfig;
use crate::error::Error;

/// Arguments of `export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `export` from the command line and reports what was written.
///
/// # Errors
/// [`Error`] when the configuration is refused or the export fails.
pub fn execute(args: &Args) -> Result<(), Error> {
    let cfg = super::load_config(&args.config)?;
    let (m, t) = run(&cfg, &args.out)?;
    println!(
        "exported {m} metadata file(s) and {t} target file(s) to {}",
        args.out.display()
    );
    Ok(())
}

/// Exports; returns (metadata files, target files).
///
/// # Errors
/// [`Error`] when the repository cannot be opened or written out.
pub fn run(cfg: &ValidConfig, out: &Path) -> Result<(usize, usize), Error> {
    let repo = crate::server::open_repository(cfg)?;
    Ok(crate::repo::export::export(&repo, out)?)
}
