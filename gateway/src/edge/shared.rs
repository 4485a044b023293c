//! State shared by the edge's accept loop and all of its sessions.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::cooloff::Cooloff;
use super::events::{EdgeEvent, EdgeObserver};
use super::peer_refusals::PeerRefusals;
use super::rate_limit::DeviceBuckets;
use super::replay::SeqTracker;
use crate::broker::BrokerHandle;
use crate::context::GatewayContext;
use crate::sink::TelemetrySink;

/// What every session of one edge reads.
pub(crate) struct Shared {
    /// Configuration, registry, audit log, metrics, shutdown.
    pub(crate) ctx: Arc<GatewayContext>,
    /// The embedded broker sessions relay to.
    pub(crate) broker: BrokerHandle,
    /// TLS with client certificates from the ward device CA.
    pub(crate) acceptor: TlsAcceptor,
    /// Turns at a TLS handshake: `edge.max_concurrent_handshakes`.
    pub(crate) handshakes: Semaphore,
    /// Where accepted telemetry is committed before it is forwarded.
    pub(crate) sink: Option<Arc<dyn TelemetrySink>>,
    /// Last accepted `seq` per device, across sessions.
    pub(crate) seqs: SeqTracker,
    /// Devices kept off for a while after flooding.
    pub(crate) cooloff: Cooloff,
    /// Publish rate bucket per device, across sessions.
    pub(crate) buckets: Arc<DeviceBuckets>,
    /// Refusals before authentication per peer: summarised, throttled.
    pub(crate) peer_refusals: PeerRefusals,
    /// Who watches the edge's events, if anyone.
    pub(crate) observer: Option<Arc<dyn EdgeObserver>>,
}

impl Shared {
    /// Pass an event to the observer; `event` is only built if there is one.
    pub(crate) fn observe(&self, event: impl FnOnce() -> EdgeEvent) {
        if let Some(observer) = &self.observer {
            observer.observe(&event());
        }
    }
}
