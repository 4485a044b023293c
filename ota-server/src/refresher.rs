//! The background task that keeps `timestamp.json` fresh.
//!
//! Every `tuf.timestamp_refresh` it re-signs the timestamp with a new
//! expiry of `tuf.timestamp_expiry` (validation guarantees the refresh is at
//! most half the expiry), so clients always hold a timestamp that is not
//! about to expire and a frozen mirror is detected once its copy expires.
//! A failed refresh is retried after a short back-off and logged at `error`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::repo::Repository;

/// Runs until `shutdown` is cancelled.
pub async fn run(
    repo: Arc<Repository>,
    metrics: Arc<Metrics>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let retry = (every / 4).max(Duration::from_millis(200));
    let mut wait = every;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
        match repo.refresh_timestamp().await {
            Ok(expires) => {
                metrics.timestamp_refreshes.inc();
                metrics.timestamp_expiry_seconds.set(expires.as_second());
                tracing::debug!(expires = %expires, "timestamp re-signed");
                wait = every;
            }
            Err(e) => {
                metrics.timestamp_refresh_failures.inc();
                tracing::error!(error = %e, "cannot re-sign timestamp.json; clients will see it expire unless this is fixed");
                wait = retry;
            }
        }
    }
    tracing::info!("timestamp refresher stopped");
}
