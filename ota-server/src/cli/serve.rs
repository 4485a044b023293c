//! `ota-server serve`: runs until SIGINT or SIGTERM.

use tokio_util::sync::CancellationToken;

use crate::config::ValidConfig;
use crate::error::Error;

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
