//! `ota-server serve`: runs until SIGINT or SIGTERM.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::config::ValidConfig;
use crate::error::Error;

/// Arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Log format (overrides `log_format` of the config).
    #[arg(long, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
}

/// Runs `serve` from the command line: loads and checks the configuration,
/// starts logging (`log_format` from the command line, else the config's),
/// serves until a termination signal.
///
/// # Errors
/// [`Error`] when the configuration is refused or the server cannot start.
pub fn execute(args: &Args) -> Result<(), Error> {
    let cfg = super::load_config(&args.config)?;
    super::init_tracing(args.log_format.as_deref().unwrap_or(&cfg.log_format));
    super::runtime()?.block_on(run(cfg))
}

/// Starts the server and waits for a termination signal.
///
/// # Errors
/// [`Error`] when the server cannot start.
pub async fn run(cfg: ValidConfig) -> Result<(), Error> {
    let shutdown = CancellationToken::new();
    let server = crate::server::start(cfg, shutdown.clone()).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| Error::Io {
            action: "installing the SIGTERM handler".into(),
            source,
        })?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
