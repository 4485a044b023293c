//! State shared by the edge's accept loop and all of its sessions.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

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
    /// Where accepted telemetry is committed before it is forwarded.
    pub(crate) sink: Option<Arc<dyn TelemetrySink>>,
    /// Last accepted `seq` per device, across sessions.
    pub(crate) seqs: SeqTracker,
}
