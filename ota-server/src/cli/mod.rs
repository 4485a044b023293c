//! The `ota-server` command line: one module per subcommand.
//!
//! Each module holds its subcommand's clap arguments (`Args`) and an
//! `execute` that runs it from the command line, next to the library-level
//! `run` that tests call directly. `main.rs` only parses [`Cli`], calls
//! [`run`] and maps an error to exit code 2.
//!
//! Logging is the same in every Wardgate binary: the filter comes from
//! `WARDGATE_LOG` (`tracing` `EnvFilter` syntax, default `info`); `serve`,
//! the subcommand that logs, takes the format from `--log-format` or else
//! the config's `log_format`.

pub mod export;
pub mod init;
pub mod serve;
pub mod token;

use std::path::Path;

use clap::{Parser, Subcommand};

use crate::config::{Config, ValidConfig};
use crate::error::Error;

/// Environment variable holding the log filter, as in every Wardgate binary.
pub const LOG_FILTER_ENV: &str = "WARDGATE_LOG";

/// Wardgate central OTA server.
#[derive(Debug, Parser)]
#[command(name = "ota-server", version, about = "Wardgate central OTA server")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the TUF repository and the API until SIGINT/SIGTERM.
    Serve(serve::Args),
    /// Create the repository from `tuf-repo` output (metadata/ and targets/).
    Init(init::Args),
    /// Export the current repository as static files for a CDN or mirror.
    Export(export::Args),
    /// Print a new API token and the SHA-256 to put in the configuration.
    Token,
}

/// Runs a parsed command line.
///
/// # Errors
/// [`Error`] from the subcommand; its message names the cause and the
/// config field or argument at fault.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Serve(a) => serve::execute(&a),
        Command::Init(a) => init::execute(&a),
        Command::Export(a) => export::execute(&a),
        Command::Token => {
            token::execute();
            Ok(())
        }
    }
}

/// Loads, overrides from the environment and validates the configuration.
///
/// # Errors
/// [`Error::Config`] naming the bad field or environment variable.
pub fn load_config(path: &Path) -> Result<ValidConfig, Error> {
    Ok(Config::load(Some(path), std::env::vars())?.validate()?)
}

/// A multi-threaded tokio runtime for the subcommands that need one.
///
/// # Errors
/// [`Error::Io`] when the runtime cannot start.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Runtime::new().map_err(|source| Error::Io {
        action: "starting the tokio runtime".into(),
        source,
    })
}

/// Initialises `tracing` in `text` or `json` format, filtered by
/// `WARDGATE_LOG` (default `info`). A second call keeps the first setting.
pub fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_FILTER_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}
