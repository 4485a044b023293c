//! `ota-server init --from <dir>`: imports a repository authored with
//! `tuf-repo` and re-signs snapshot and timestamp with the online keys.

use std::path::Path;

use crate::config::ValidConfig;
use crate::error::Error;
use crate::repo::{import, OnlineKeys, Repository};

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
