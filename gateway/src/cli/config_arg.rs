//! `--config` for the offline subcommands (`device`, `audit`, `access`):
//! they need the database location and a few settings, not the TLS files,
//! so the file is read with its `WARDGATE_*` overrides but not validated.

use std::path::PathBuf;

use crate::config::Config;
use crate::context::create_private_dir;

/// `--config` for the subcommands that only need the database.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Gateway configuration file (TOML).
    #[arg(long, short, env = "WARDGATE_CONFIG")]
    pub config: PathBuf,
}

impl ConfigArg {
    /// Load the configuration for an offline subcommand: parsed with
    /// `WARDGATE_*` overrides, but TLS files are not required.
    ///
    /// # Errors
    /// The file cannot be read or parsed.
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&self.config)?)
    }

    /// Load the configuration and make sure the data dir exists (0700);
    /// returns the config and the database path.
    ///
    /// # Errors
    /// As [`ConfigArg::load`], or the data dir cannot be created.
    pub fn load_with_db(&self) -> anyhow::Result<(Config, PathBuf)> {
        let config = self.load()?;
        create_private_dir(&config.storage.data_dir)?;
        let db = config.storage.db_path();
        Ok((config, db))
    }
}
