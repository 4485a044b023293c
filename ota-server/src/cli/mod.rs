//! Subcommands of the `ota-server` binary, one module each. `main.rs` only
//! parses arguments and calls these.

pub mod export;
pub mod init;
pub mod serve;
pub mod token;

use std::path::Path;

use crate::config::{Config, ValidConfig};
use crate::error::Error;

/// Loads, overrides from the environment and validates the configuration.
///
/// # Errors
/// [`Error::Config`] naming the bad field.
pub fn load_config(path: &Path) -> Result<ValidConfig, Error> {
    Ok(Config::load(Some(path), std::env::vars())?.validate()?)
}

/// Initialises `tracing` in `text` or `json` format, filtered by `RUST_LOG`
/// (default `info`).
pub fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
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
