//! The embedded `rumqttd` broker behind the edge.
//!
//! It listens only on a loopback address (ephemeral port) and demands a
//! per-boot random username and password, so nothing but the edge (which
//! holds the credential) can reach it over TCP. Two listeners: MQTT 3.1.1 and
//! MQTT 5, because `rumqttd` serves one protocol per listener. The gateway's
//! own components talk to it in-process through local links
//! ([`BrokerHandle::link`]).
//!
//! `rumqttd` 0.20 has no shutdown: its router and listener threads live until
//! the process exits. [`BrokerHandle`] therefore owns nothing that needs
//! stopping; the edge stops forwarding on shutdown.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;
use rumqttd::local::{LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{v4::V4, v5::V5, Protocol};
use rumqttd::{
    ConnectionSettings, LinkType, Notification, Router, RouterConfig, Server, ServerSettings,
};

use crate::config::BrokerConfig;

/// Username the edge presents to the broker.
pub const EDGE_USERNAME: &str = "wardgate-edge";

/// What went wrong starting the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No listener came up.
    #[error("embedded broker did not start listening on {bind} ({protocol}): {detail}; check that loopback networking works")]
    Listen {
        /// Bind address.
        bind: IpAddr,
        /// `v4` or `v5`.
        protocol: &'static str,
        /// What failed.
        detail: String,
    },
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

/// The per-boot credential the edge uses; never logged.
#[derive(Clone)]
pub struct BrokerCredentials {
    /// Username.
    pub username: String,
    /// Random password (64 hex characters).
    pub password: String,
}

impl std::fmt::Debug for BrokerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A running embedded broker.
#[derive(Clone)]
pub struct BrokerHandle {
    /// The MQTT 3.1.1 listener.
    pub v4_addr: SocketAddr,
    /// The MQTT 5 listener.
    pub v5_addr: SocketAddr,
    /// The credential it demands.
    pub credentials: BrokerCredentials,
    link: Arc<LinkFn>,
}

impl std::fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerHandle")
            .field("v4_addr", &self.v4_addr)
            .field("v5_addr", &self.v5_addr)
            .finish_non_exhaustive()
    }
}

impl BrokerHandle {
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

    /// Start the router and both listeners.
    ///
    /// # Errors
    /// [`BrokerError::Listen`] if a listener does not come up.
    pub fn start(config: &BrokerConfig) -> Result<Self, BrokerError> {
        let mut secret = [0_u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let credentials = BrokerCredentials {
            username: EDGE_USERNAME.to_owned(),
            password: hex::encode(secret),
        };
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
        let v4_addr = spawn_listener(config, &credentials, "v4", {
            let tx = router_tx.clone();
            move |settings| Server::new(settings, tx.clone(), V4)
        })?;
        let v5_addr = spawn_listener(config, &credentials, "v5", {
            let tx = router_tx.clone();
            move |settings| Server::new(settings, tx.clone(), V5)
        })?;
        #[allow(clippy::result_large_err)] // rumqttd's own error type
        let link: Arc<LinkFn> = Arc::new(move |client_id: &str| {
            rumqttd::local::LinkBuilder::new(client_id, router_tx.clone()).build()
        });
        tracing::info!(%v4_addr, %v5_addr, "embedded broker listening on loopback");
        Ok(Self {
            v4_addr,
            v5_addr,
            credentials,
            link,
        })
    }
}

fn spawn_listener<P>(
    config: &BrokerConfig,
    credentials: &BrokerCredentials,
    protocol: &'static str,
    make: impl Fn(ServerSettings) -> Server<P>,
) -> Result<SocketAddr, BrokerError>
where
    P: Protocol + Clone + Send + 'static,
{
    let mut last_error = String::new();
    // rumqttd binds its own listener, so pick a free port, release it and
    // hand it over; retry if another process takes it in between.
    for _ in 0..5 {
        let addr = match StdTcpListener::bind(SocketAddr::new(config.bind, 0))
            .and_then(|l| l.local_addr())
        {
            Ok(a) => a,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        let mut auth = HashMap::new();
        auth.insert(credentials.username.clone(), credentials.password.clone());
        let settings = ServerSettings {
            name: format!("wardgate-broker-{protocol}"),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 0,
            connections: ConnectionSettings {
                connection_timeout_ms: 10_000,
                max_payload_size: config.max_payload_bytes,
                max_inflight_count: 100,
                auth: Some(auth),
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let mut server = make(settings);
        let spawned = std::thread::Builder::new()
            .name(format!("broker-{protocol}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot build broker runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    if let Err(e) = server.start(LinkType::Remote).await {
                        tracing::error!(error = %e, "embedded broker listener stopped");
                    }
                });
            });
        if let Err(e) = spawned {
            last_error = e.to_string();
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(addr);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        last_error = format!("nothing accepted on {addr} within 5s");
    }
    Err(BrokerError::Listen {
        bind: config.bind,
        protocol,
        detail: last_error,
    })
}
