//! `ota-server init --from <dir>`: imports a repository authored with
//! `tuf-repo` and re-signs snapshot and timestamp with the online keys.

use std::path::{Path, PathBuf};

use crate::config::ValidConfig;
use crate::error::Error;
use crate::repo::{import, OnlineKeys, Repository};

/// Arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Directory written by `tuf-repo`.
    #[arg(long)]
    pub from: PathBuf,
}

/// Runs `init` from the command line and reports what was imported.
///
/// # Errors
/// [`Error`] when the configuration is refused or the import fails.
pub fn execute(args: &Args) -> Result<(), Error> {
    let cfg = super::load_config(&args.config)?;
    let n = super::runtime()?.block_on(run(&cfg, &args.from))?;
    println!(
        "repository created in {} with {n} published target(s)",
        cfg.data_dir.display()
    );
    Ok(())
}

/// Imports `src` into the configured data directory. Returns the number of
/// targets already published in it.
///
/// # Errors
/// [`Error::Repo`] when the source does not verify or keys do not match.
pub async fn run(cfg: &ValidConfig, src: &Path) -> Result<usize, Error> {
    let keys = OnlineKeys::load(&cfg.tuf.snapshot_key, &cfg.tuf.timestamp_key)?;
    let dir = Repository::dir_in(&cfg.data_dir);
    Ok(import::init_from(&dir, src, &keys, crate::server::expiries(cfg)).await?)
}
