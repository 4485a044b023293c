//! The embedded `rumqttd` broker behind the edge.
//!
//! It has no listener and no network presence at all. Each admitted device
//! session gets its own connection to it as an in-process pipe
//! ([`BrokerHandle::connect`]): one end is served by `rumqttd`'s own
//! per-connection code (CONNECT, link, will), the other is the edge's. A
//! device session therefore costs one file descriptor, its TLS socket; over
//! loopback TCP it cost three, and 10,000 devices did not fit in a 20,000
//! file limit. The gateway's own components talk to the broker through
//! local links ([`BrokerHandle::link`]). Both need the patched `rumqttd` in
//! `gateway/vendor/rumqttd` (`WARDGATE.md` there), which also fixes the
//! will-handler panic by which one device could take the broker down.
//!
//! `rumqttd` 0.20 has no shutdown: its router thread lives until the
//! process exits. [`BrokerHandle`] therefore owns nothing that needs
//! stopping; each connection ends when the edge closes its end.

use std::sync::Arc;
#[cfg(test)]
use std::time::Duration;

use rumqttd::local::{LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{v4::V4, v5::V5};
use rumqttd::{
    Attacher, ConnectionSettings, Notification, Router, RouterConfig, Server, ServerSettings,
};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};

use crate::config::BrokerConfig;

/// What went wrong with the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A local link was refused.
    #[error("embedded broker refused a local link for {client_id}: {source}")]
    Link {
        /// Client id of the link.
        client_id: String,
        /// The broker's error.
        source: Box<LinkError>,
    },
}

#[allow(clippy::result_large_err)] // rumqttd's own signature
type LinkFn = dyn Fn(&str) -> Result<(LinkTx, LinkRx, Notification), LinkError> + Send + Sync;

/// The MQTT version of a broker connection: `rumqttd` serves one protocol
/// per server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    V4,
    /// MQTT 5.
    V5,
}

/// How many bytes each direction of a session's pipe buffers before the
/// writer waits: a few packets. Memory is taken only as it fills.
const PIPE_BUFFER: usize = 16 * 1024;

/// A running embedded broker.
#[derive(Clone)]
pub struct BrokerHandle {
    v4: Attacher<V4>,
    v5: Attacher<V5>,
    link: Arc<LinkFn>,
}

impl std::fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerHandle").finish_non_exhaustive()
    }
}

impl BrokerHandle {
    /// A new broker connection for a device session speaking `version`:
    /// the edge's end of an in-process pipe whose other end is served by
    /// [`Self::serve`], from the CONNECT the edge writes first until the
    /// edge closes its end. Must be called within the runtime.
    #[must_use]
    pub fn connect(&self, version: MqttVersion) -> DuplexStream {
        let (edge_end, broker_end) = tokio::io::duplex(PIPE_BUFFER);
        self.serve(version, broker_end);
        edge_end
    }

    /// Serve one MQTT connection of `version` over `stream` on a task of
    /// its own, exactly as a listener would serve an accepted socket (the
    /// benchmarks use it for a bare-broker baseline over TCP). Must be
    /// called within the runtime.
    pub fn serve<S>(&self, version: MqttVersion, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        // Detached: after the stream closes the task only waits out a will
        // delay the client asked for, then publishes the will.
        match version {
            MqttVersion::V4 => tokio::spawn(self.v4.attach(stream)),
            MqttVersion::V5 => tokio::spawn(self.v5.attach(stream)),
        };
    }

    /// An in-process link (for the uplink, OTA agent, tests). Use a client id
    /// with a `.` (e.g. `gateway.uplink`): device ids cannot contain one, so
    /// a device can never take over the link's session.
    ///
    /// # Errors
    /// [`BrokerError::Link`] if the router refuses it.
    pub fn link(&self, client_id: &str) -> Result<(LinkTx, LinkRx), BrokerError> {
        (self.link)(client_id)
            .map(|(tx, rx, _ack)| (tx, rx))
            .map_err(|source| BrokerError::Link {
                client_id: client_id.to_owned(),
                source: Box::new(source),
            })
    }

    /// Start the router, and the two servers (MQTT 3.1.1 and MQTT 5) that
    /// the edge's sessions connect to.
    #[must_use]
    pub fn start(config: &BrokerConfig) -> Self {
        if let Some(bind) = config.bind {
            tracing::warn!(
                %bind,
                "broker.bind is no longer used: the embedded broker has no listener, the edge's sessions reach it in-process; remove the key"
            );
        }
        let router = Router::new(
            0,
            RouterConfig {
                max_connections: config.max_connections,
                max_outgoing_packet_count: 200,
                max_segment_size: 104_857_600,
                max_segment_count: 10,
                ..RouterConfig::default()
            },
        );
        let router_tx = router.spawn();
        let v4 = Server::new(settings(config, "v4"), router_tx.clone(), V4).attacher();
        let v5 = Server::new(settings(config, "v5"), router_tx.clone(), V5).attacher();
        #[allow(clippy::result_large_err)] // rumqttd's own error type
        let link: Arc<LinkFn> = Arc::new(move |client_id: &str| {
            rumqttd::local::LinkBuilder::new(client_id, router_tx.clone()).build()
        });
        tracing::info!("embedded broker started (in-process connections only)");
        Self { v4, v5, link }
    }
}

/// The settings of one server. `listen` is never bound (nothing calls
/// `Server::start`); `auth` is off because only the edge, in this process,
/// can open a connection, and it admits devices by their certificates.
fn settings(config: &BrokerConfig, protocol: &str) -> ServerSettings {
    ServerSettings {
        name: format!("wardgate-broker-{protocol}"),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: config.max_payload_bytes,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn broker() -> BrokerHandle {
        BrokerHandle::start(&BrokerConfig::default())
    }

    /// Send a CONNECT for `client_id` and return the first 4 bytes the
    /// broker answers (a CONNACK), or `None` if it closed without one.
    async fn connack(broker: &BrokerHandle, client_id: &str) -> Option<[u8; 4]> {
        let mut s = broker.connect(MqttVersion::V4);
        s.write_all(&wardgate_tests::mqtt::connect_v4(client_id, None))
            .await
            .ok()?;
        let mut ack = [0_u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
            .await
            .ok()?
            .ok()?;
        Some(ack)
    }

    // bytebeamio/rumqtt#1062: a connection that goes away between its
    // CONNECT and the broker's CONNACK left a will handler behind, the next
    // CONNECT of that client id panicked on it under the server's lock, and
    // from then on every connection to the server failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_dropped_before_its_connack_leaves_the_broker_working() {
        let broker = broker();
        for _ in 0..3 {
            let mut s = broker.connect(MqttVersion::V4);
            s.write_all(&wardgate_tests::mqtt::connect_v4("pump-01", None))
                .await
                .unwrap();
            drop(s);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            connack(&broker, "pump-01").await,
            Some([0x20, 0x02, 0x00, 0x00]),
            "the same client id is served again"
        );
        assert_eq!(
            connack(&broker, "pump-02").await,
            Some([0x20, 0x02, 0x00, 0x00]),
            "and so is everyone else"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_of_both_versions_are_served_in_process() {
        let broker = broker();
        assert_eq!(
            connack(&broker, "pump-01").await,
            Some([0x20, 0x02, 0x00, 0x00])
        );
        // An MQTT 3.1.1 CONNECT on the MQTT 5 server is not accepted.
        let mut s = broker.connect(MqttVersion::V5);
        s.write_all(&wardgate_tests::mqtt::connect_v4("pump-02", None))
            .await
            .unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        assert!(
            got.len() < 4 || got[3] != 0,
            "a v4 CONNECT is refused by the v5 server: {got:?}"
        );
    }
}
