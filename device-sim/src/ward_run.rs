//! Running a [`Timeline`] live against a gateway, in real time.
//!
//! One task per actor (each device, each thief, the stranger) sleeps until
//! each of its steps is due and does it over real mutual TLS MQTT
//! ([`SimDevice`]): a publish when no session is open first connects, as a
//! real client reconnects after it was disconnected; a stranger's
//! connection offers no client certificate, so the gateway refuses it in
//! the handshake. Publishes are QoS 1 and not waited on (the client keeps
//! its in-flight window). The [`RunReport`] says per actor how many
//! sessions it needed and what went wrong, so a test can check that
//! bystanders kept streaming.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use wardgate_protocol::DeviceId;
use wardgate_tls::{ClientTls, TrustAnchors};

use crate::ward::{Action, Actor, Step, Timeline};
use crate::{DeviceEvent, DeviceOptions, DeviceTls, SimDevice, SimError};

/// Looks up the TLS material of a device (the thief uses the same).
pub type Certificates = Arc<dyn Fn(&DeviceId) -> Option<DeviceTls> + Send + Sync>;

/// Where and how to reach the gateway.
#[derive(Clone)]
pub struct LiveTarget {
    /// Host name as in the gateway's certificate.
    pub host: String,
    /// Edge port.
    pub port: u16,
    /// The CA the gateway's certificate chains to (PEM).
    pub ca_pem: String,
    /// Each device's certificate and key.
    pub certificates: Certificates,
}

impl std::fmt::Debug for LiveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// What one actor saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorReport {
    /// Sessions opened (the first one included).
    pub sessions: u32,
    /// Publishes handed to the client.
    pub publishes: u32,
    /// Times the gateway ended a session of this actor.
    pub dropped: u32,
    /// Connection attempts that failed (refused, TLS).
    pub failures: u32,
}

/// What the run saw, per actor.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Per actor.
    pub actors: BTreeMap<Actor, ActorReport>,
}

/// Run `timeline` against `target` until it ends or `cancel` fires.
pub async fn run(timeline: &Timeline, target: &LiveTarget, cancel: CancellationToken) -> RunReport {
    let mut per_actor: BTreeMap<Actor, Vec<Step>> = BTreeMap::new();
    for s in &timeline.steps {
        per_actor
            .entry(s.actor.clone())
            .or_default()
            .push(s.clone());
    }
    let start = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (actor, steps) in per_actor {
        let target = target.clone();
        let cancel = cancel.clone();
        set.spawn(async move {
            let report = act(&actor, steps, &target, start, cancel).await;
            (actor, report)
        });
    }
    let mut report = RunReport::default();
    while let Some(r) = set.join_next().await {
        if let Ok((actor, r)) = r {
            report.actors.insert(actor, r);
        }
    }
    report
}

/// One connection of an actor and whether it is still up.
struct Live {
    device: SimDevice,
}

impl Live {
    /// Read the events waiting; `false` once the connection ended.
    async fn alive(&mut self) -> bool {
        loop {
            match self.device.next_event(Duration::ZERO).await {
                Ok(DeviceEvent::Disconnected(_)) | Err(SimError::Closed(_)) => return false,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
    }
}

async fn act(
    actor: &Actor,
    steps: Vec<Step>,
    target: &LiveTarget,
    start: tokio::time::Instant,
    cancel: CancellationToken,
) -> ActorReport {
    let mut report = ActorReport::default();
    let id = match actor {
        Actor::Device(d) | Actor::Thief(d) => Some(d.clone()),
        Actor::Stranger => None,
    };
    let options = id.as_ref().and_then(|d| {
        (target.certificates)(d).map(|tls| DeviceOptions {
            id: d.clone(),
            client_id: None,
            host: target.host.clone(),
            port: target.port,
            tls,
            keep_alive: Duration::from_secs(30),
        })
    });
    let mut live: Option<Live> = None;
    for step in steps {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(start + step.at) => {}
        }
        if let Some(l) = live.as_mut() {
            if !l.alive().await {
                report.dropped += 1;
                live = None;
            }
        }
        match step.action {
            Action::ConnectUntrusted => {
                let target = target.clone();
                tokio::spawn(async move { untrusted(&target).await });
                report.sessions += 1;
            }
            Action::Disconnect => {
                if let Some(l) = live.take() {
                    let _ = l.device.disconnect().await;
                    // Let the DISCONNECT leave before the client is dropped.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Action::Connect | Action::Publish { .. } => {
                if live.is_none() {
                    let Some(opts) = options.as_ref() else {
                        report.failures += 1;
                        continue;
                    };
                    match SimDevice::connect(opts).await {
                        Ok(device) => {
                            report.sessions += 1;
                            live = Some(Live { device });
                        }
                        Err(e) => {
                            tracing::debug!(?actor, error = %e, "connect failed");
                            report.failures += 1;
                            continue;
                        }
                    }
                }
                if let (Action::Publish { topic, payload, .. }, Some(l)) =
                    (step.action, live.as_mut())
                {
                    if l.device.publish_raw(&topic, payload).await.is_ok() {
                        report.publishes += 1;
                    }
                }
            }
        }
    }
    if let Some(l) = live.as_mut() {
        if !l.alive().await {
            report.dropped += 1;
        }
        let _ = l.device.disconnect().await;
    }
    report
}

/// A TLS connection offering no client certificate: the gateway refuses it
/// in the handshake.
async fn untrusted(target: &LiveTarget) {
    let Ok(roots) = TrustAnchors::from_pem("LiveTarget.ca_pem", target.ca_pem.as_bytes()) else {
        return;
    };
    let Ok(config) = ClientTls::new(roots).build() else {
        return;
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let Ok(name) = rustls::pki_types::ServerName::try_from(target.host.clone()) else {
        return;
    };
    let Ok(tcp) = TcpStream::connect((target.host.as_str(), target.port)).await else {
        return;
    };
    if let Ok(Ok(mut tls)) =
        tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await
    {
        // TLS 1.3: the refusal arrives on the first read.
        let mut buf = [0u8; 16];
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut tls, &mut buf),
        )
        .await;
    }
}
