//! The `gateway` command line: one module per subcommand.
//!
//! `main.rs` parses [`Cli`] and calls [`dispatch`]; everything a test would
//! want to reach lives here and in the library.

pub mod access;
pub mod audit;
pub mod device;
pub mod ota;
pub mod pki;
pub mod run;
pub mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// Wardgate ward edge gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    /// Log format (overrides `log.format` of the config).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run(run::RunArgs),
    /// Create the ward device CA, the server certificate and device certificates.
    Pki(pki::PkiArgs),
    /// Enrol, list, revoke, quarantine or re-activate devices.
    Device(device::DeviceArgs),
    /// Verify or export the hash-chained audit log.
    Audit(audit::AuditArgs),
    /// Admin API access: tokens, break-glass, access review.
    Access(AccessCli),
    /// OTA agent tools (a TUF client following the conformance protocol).
    Ota(ota::OtaArgs),
}

impl Cli {
    /// The log format requested on the command line, if any.
    #[must_use]
    pub fn log_format(&self) -> Option<LogFormat> {
        match self.log_format.as_deref() {
            Some("json") => Some(LogFormat::Json),
            Some(_) => Some(LogFormat::Text),
            None => None,
        }
    }
}

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
        let text = std::fs::read_to_string(&self.config).map_err(|e| {
            anyhow::anyhow!("cannot read config file {}: {e}", self.config.display())
        })?;
        Ok(Config::from_toml_with_env(
            &text,
            &self.config.display().to_string(),
            std::env::vars(),
        )?)
    }

    /// Load the configuration and make sure the data dir exists (0700);
    /// returns the config and the database path.
    ///
    /// # Errors
    /// As [`ConfigArg::load`], or the data dir cannot be created.
    pub fn load_with_db(&self) -> anyhow::Result<(Config, PathBuf)> {
        let config = self.load()?;
        crate::context::create_private_dir(&config.storage.data_dir)?;
        let db = config.storage.db_path();
        Ok((config, db))
    }
}

/// Run a parsed command line.
///
/// # Errors
/// Whatever the subcommand reports; `main` prints it and exits non-zero.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Pki(args) => pki::run(&args, &mut out).map(|()| ExitCode::SUCCESS),
        Command::Device(args) => device::run(&args, &mut out).map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => audit::run(&args, &mut out),
        Command::Access(AccessCli { config, args }) => {
            let (config, db) = config.load_with_db()?;
            access::run(args, &db, &config.admin, &mut out).map(|()| ExitCode::SUCCESS)
        }
        Command::Ota(args) => ota::run(&args, &mut out),
    }
}

/// `gateway access --config <file> ...`
#[derive(Debug, clap::Args)]
pub struct AccessCli {
    /// Configuration (database location, admin settings).
    #[command(flatten)]
    pub config: ConfigArg,
    /// The access subcommand.
    #[command(flatten)]
    pub args: access::AccessArgs,
}
