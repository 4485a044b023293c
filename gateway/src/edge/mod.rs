//! The device-facing edge: mutual TLS, MQTT parsing and per-packet policy in
//! front of the embedded broker.
//!
//! [`start`] binds the device listener (TLS only; there is no plaintext
//! device port) and runs one [`session`] per connection:
//!
//! 1. TLS handshake within `edge.handshake_timeout`, client certificate
//!    verified against the ward device CA ([`tls`]); the device id is read
//!    from the certificate.
//! 2. [`admission`]: the first packet must be an MQTT 3.1.1 or 5 CONNECT
//!    within `edge.connect_timeout`, framed by [`frame`] and decoded by
//!    `rumqttd`'s codecs; [`admission::check_connect`] compares the client
//!    id with the certificate, consults the registry, checks the pinned
//!    certificate and refuses a last will. Refusals are answered with a
//!    refusing CONNACK in the device's protocol version.
//! 3. The session opens its own connection to the loopback broker with the
//!    per-boot credential and relays: every device packet passes the
//!    controls in the order of its inspection ([`rate_limit`], [`acl`],
//!    [`payload`], [`replay`]; [`policy`] joins them and re-exports their
//!    types) and (telemetry) the [`crate::sink::TelemetrySink`] before it is
//!    forwarded; broker packets are relayed back through a bounded queue.
//!
//! A [`violation::Violation`] ends the session at once: the broker
//! connection is dropped before anything after the offending packet is
//! forwarded, an audit row is written and `wardgate_edge_violations_total{reason}`
//! counted. A device cut off for its publish rate is kept off for a
//! doubling penalty ([`cooloff`]): its reconnects are closed right after the
//! handshake, counted but not audited one by one, and its rate bucket is
//! per device, not per session ([`rate_limit::DeviceBuckets`]), so a flood
//! costs the others nothing (benchmark: `gateway/benches/fairness.rs`).
//! Refusals before authentication (bad handshakes, no or foreign
//! certificates, the connection cap) are summarised per peer address and a
//! peer that keeps failing is throttled at accept ([`peer_refusals`]), so a
//! flood of bad handshakes costs neither a database row nor a TLS handshake
//! per attempt.
//! Registry changes reach live sessions through
//! [`crate::registry::Registry::subscribe`]. Connection count, packet size,
//! queues and timeouts are all bounded, and each session is its own task,
//! so one device cannot stall the others.

pub mod acl;
pub mod admission;
mod broker_link;
mod codec;
mod connack;
pub mod cooloff;
pub mod events;
pub mod frame;
mod inspect;
pub mod payload;
pub mod peer_refusals;
mod persistent_session;
pub mod policy;
pub mod rate_limit;
mod relay;
pub mod replay;
mod report;
pub mod session;
mod shared;
pub mod tls;
pub mod violation;

/// The edge's packet decoding as the session calls it, for the
/// coverage-guided fuzz targets in `tests/fuzz/`. Not an API: nothing else
/// may depend on it.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::codec::Codec;
}

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::broker::BrokerHandle;
use crate::context::GatewayContext;
use crate::sink::TelemetrySink;
pub use events::{EdgeEvent, EdgeObserver};
pub use relay::IN_FLIGHT_WINDOW;
use shared::Shared;

/// What went wrong starting the edge.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// TLS material is missing or invalid (the error names the field).
    #[error("edge TLS setup failed: {0}")]
    Tls(#[from] wardgate_tls::TlsError),
    /// The listener could not bind.
    #[error("cannot listen for devices on {addr}: {source}; check edge.listen")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A running edge listener.
#[derive(Debug, Clone, Copy)]
pub struct EdgeHandle {
    /// The bound device listener address.
    pub addr: SocketAddr,
}

/// Bind the device listener and start accepting sessions; the accept loop
/// and sessions run on `ctx.tasks` and stop when `ctx.shutdown` is cancelled.
/// Accepted telemetry is committed to `sink` (if any) before its PUBACK;
/// every session event and packet decision is passed to `observer` (if
/// any, see [`events`]).
///
/// # Errors
/// [`EdgeError`] if the TLS material is unusable or the address cannot be bound.
pub async fn start(
    ctx: Arc<GatewayContext>,
    broker: BrokerHandle,
    sink: Option<Arc<dyn TelemetrySink>>,
    observer: Option<Arc<dyn EdgeObserver>>,
) -> Result<EdgeHandle, EdgeError> {
    let cfg = &ctx.config.edge;
    let tls_config = tls::server_config(&cfg.ca_cert, &cfg.server_cert, &cfg.server_key)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| EdgeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| EdgeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        broker,
        acceptor: TlsAcceptor::from(tls_config),
        handshakes: Semaphore::new(cfg.max_concurrent_handshakes),
        sink,
        seqs: replay::SeqTracker::default(),
        cooloff: cooloff::Cooloff::default(),
        buckets: Arc::new(rate_limit::DeviceBuckets::new(
            cfg.rate_per_second,
            cfg.rate_burst,
        )),
        peer_refusals: peer_refusals::PeerRefusals::new(
            cfg.peer_refusal_interval,
            cfg.peer_refusals_before_throttle,
            std::time::Instant::now(),
        ),
        observer,
    });
    tracing::info!(%addr, "edge listening for devices (mutual TLS)");
    ctx.tasks
        .spawn(report::summarise_peer_refusals(shared.clone()));
    ctx.tasks.spawn(accept_loop(listener, shared, limit));
    Ok(EdgeHandle { addr })
}

/// Accept connections until shutdown; one session task per connection, at
/// most `edge.max_connections` at once.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, limit: Arc<Semaphore>) {
    let tasks = shared.ctx.tasks.clone();
    loop {
        let accepted = tokio::select! {
            () = shared.ctx.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off briefly.
                tracing::warn!(error = %e, "edge accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // A peer whose handshakes keep failing costs nothing more until
        // its interval ends: no TLS, no row (peer_refusals).
        if shared.peer_refusals.throttle(peer.ip()) {
            drop(stream);
            shared.ctx.metrics.edge.connection("peer_throttled");
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            drop(stream);
            refuse_at_capacity(&shared, peer);
            continue;
        };
        let shared = shared.clone();
        tasks.spawn(async move {
            session::run(shared, stream, peer).await;
            drop(permit);
        });
    }
    tracing::info!("edge listener stopped");
}

/// Count and (in its own task, so accepting goes on) record a connection
/// refused at `edge.max_connections`, as any refusal before
/// authentication ([`report::refuse_peer`]).
fn refuse_at_capacity(shared: &Arc<Shared>, peer: SocketAddr) {
    let shared = shared.clone();
    let tasks = shared.ctx.tasks.clone();
    tasks.spawn(async move {
        report::refuse_peer_as(
            &shared,
            peer,
            "edge.connect",
            "refused_capacity",
            "capacity",
            "edge.max_connections sessions already open",
        )
        .await;
    });
}
