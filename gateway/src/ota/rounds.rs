//! The one schedule the OTA agent's background loops share: a round now,
//! then one every interval or as soon as someone asks, until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Runs `round` at once, then after each `interval` tick or `wake`
/// notification, until `shutdown` is cancelled (which also abandons a
/// round in progress). A round that overruns the interval delays the next
/// tick instead of bunching ticks up. Used by the TUF refresh loop
/// ([`super::TufClient::run`]) and the rollout's sync loop, so both answer
/// "refresh now" and shutdown the same way.
pub(crate) async fn every_interval_or_wake<F, Fut>(
    interval: Duration,
    wake: &Notify,
    shutdown: &CancellationToken,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
            () = wake.notified() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = round() => {}
        }
    }
}
