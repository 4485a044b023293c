//! `gateway run --config <file>`: start the gateway and run until SIGINT /
//! SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::app::Gateway;
use crate::config::ValidConfig;

/// `gateway run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Gateway configuration file (TOML).
    #[arg(long, short, env = "WARDGATE_CONFIG")]
    pub config: PathBuf,
}

/// Threads for blocking work (database reads and writes, audit rows).
/// tokio's default of 512 let a reconnect storm of 1,000 devices start
/// some 400 of them, each a stack and a malloc arena: 30 MiB of resident
/// memory that the sessions were charged for, for writes that SQLite
/// serialises anyway. Blocking work beyond this waits its turn in tokio's
/// queue.
const BLOCKING_THREADS: usize = 32;

/// Start the gateway from its configuration (read and validated once by
/// [`super::Cli::prepare`]) and wait for a signal.
///
/// # Errors
/// A component that cannot start.
pub fn run(config: ValidConfig) -> anyhow::Result<ExitCode> {
    // One file per device session: raise the soft limit before anything
    // is opened (open_files).
    crate::open_files::raise(crate::open_files::needed(&config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()?;
    runtime.block_on(async move {
        let handle = Gateway::start(config).await?;
        tracing::info!(edge = %handle.edge_addr(), admin = ?handle.admin_addr, "gateway running");
        // Machine-readable readiness line for supervisors and tests.
        println!("edge listening on {}", handle.edge_addr());
        wait_for_signal().await;
        tracing::info!("shutting down");
        handle.shutdown(Duration::from_secs(10)).await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
