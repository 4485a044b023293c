//! One device session from TCP accept to its end: TLS handshake and the
//! device id from the certificate, [`crate::edge::admission`] of the
//! CONNECT, the broker connection, the [`crate::edge::relay`], and what is
//! recorded when it ends. See the module docs of [`crate::edge`] for the
//! sequence.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;
use wardgate_protocol::DeviceId;

use super::admission::{admit, Admitted};
use super::broker_link::{self, LinkError};
use super::connack;
use super::cooloff;
use super::events::EdgeEvent;
use super::persistent_session;
use super::relay::{relay, End};
use super::report::{audit, refuse_device, refuse_peer, violation_before_connect};
use super::shared::Shared;
use super::violation::Violation;
use crate::audit::{AuditEvent, Outcome};
use crate::edge::tls::{peer_identity, PeerIdentity};

/// Run one session to its end. Never panics on peer input; every outcome is
/// logged, audited and counted.
pub(crate) async fn run(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    // Boxed, like every phase but the relay (see `device_session`).
    let Some((tls, identity)) = Box::pin(handshake(&shared, tcp, peer)).await else {
        return;
    };
    let span = tracing::info_span!("device", device_id = %identity.device_id, %peer);
    if let Some(left) = shared
        .cooloff
        .remaining(&identity.device_id, std::time::Instant::now())
    {
        // No MQTT, registry or audit work (see cooloff). The connection
        // is held, idle, until the penalty is over and then closed, so that
        // a client reconnecting in a loop pays one handshake per penalty
        // rather than hundreds (it holds one of the edge's connection
        // permits meanwhile, like any session).
        span.in_scope(|| {
            tracing::debug!(
                left_ms = left.as_millis(),
                "device cooling off after a flood; connection held, then closed"
            );
        });
        shared.ctx.metrics.edge.connection("cooling_off");
        tokio::select! {
            () = tokio::time::sleep(left.min(cooloff::MAX_HOLD)) => {}
            () = shared.ctx.shutdown.cancelled() => {}
        }
        drop(tls);
        return;
    }
    Box::pin(device_session(shared, tls, identity, peer).instrument(span)).await;
}

/// The TLS handshake, in turn with others, and the device's identity from
/// its certificate; `None` (refused and recorded) if either fails.
async fn handshake(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsStream<TcpStream>, PeerIdentity)> {
    let _ = tcp.set_nodelay(true);
    let cfg = &shared.ctx.config.edge;
    // Handshakes take turns: after a power cut every device reconnects at
    // once, and thousands of handshakes in the run queue would delay the
    // packets of sessions already established. The wait is not part of
    // the device's handshake time.
    let turn = tokio::select! {
        t = shared.handshakes.acquire() => t,
        () = shared.ctx.shutdown.cancelled() => return None,
    };
    let handshake = tokio::time::timeout(cfg.handshake_timeout, shared.acceptor.accept(tcp)).await;
    drop(turn);
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            refuse_peer(
                shared,
                peer,
                "tls_handshake",
                &wardgate_tls::describe::handshake_error(&e, &crate::edge::tls::HANDSHAKE),
            )
            .await;
            return None;
        }
        Err(_) => {
            let detail = "handshake not completed in time";
            refuse_peer(shared, peer, "tls_timeout", detail).await;
            return None;
        }
    };
    let identity = match tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| peer_identity(c.as_ref()))
    {
        Some(Ok(id)) => id,
        Some(Err(e)) => {
            refuse_peer(shared, peer, "certificate_identity", &e.to_string()).await;
            return None;
        }
        None => {
            let detail = "no client certificate";
            refuse_peer(shared, peer, "no_client_certificate", detail).await;
            return None;
        }
    };
    Some((tls, identity))
}

/// Admission, broker connection, relay and the record of the end.
///
/// An async fn's state is as large as its largest await, and a session's
/// task holds it for hours: every phase but the relay (admission, database
/// and audit work, the broker's CONNECT) is boxed, so its state exists only
/// while it runs (a session was 16 KiB of task state, most of it the
/// futures of phases long over; 10,000 devices make that count).
async fn device_session(
    shared: Arc<Shared>,
    tls: TlsStream<TcpStream>,
    identity: PeerIdentity,
    peer: SocketAddr,
) {
    let device = identity.device_id.clone();
    let (mut dev_rd, mut dev_wr) = tokio::io::split(tls);
    let mut buf = BytesMut::with_capacity(1024);
    let Some(admitted) = Box::pin(admit(
        &shared,
        &identity,
        peer,
        (&mut dev_rd, &mut dev_wr),
        &mut buf,
    ))
    .await
    else {
        return;
    };
    if shared.seqs.last(&device).is_none() {
        let registry = shared.ctx.registry.clone();
        let d = device.clone();
        match tokio::task::spawn_blocking(move || registry.stored_seqs(&d)).await {
            Ok(Ok(stored)) => shared.seqs.seed(&device, stored),
            _ => {
                tracing::error!("cannot read the device's replay state from the gateway database; refusing the session");
                let _ = dev_wr
                    .write_all(connack::server_unavailable(admitted.codec))
                    .await;
                return;
            }
        }
    }
    // Observed as admitted before the broker hears of the session: the
    // broker's takeover of an older session with this id (a stolen
    // certificate in use elsewhere) must not end that one before the
    // observer sees both live.
    shared.observe(|| EdgeEvent::SessionAdmitted {
        device: device.clone(),
        peer,
        protocol: admitted.codec.version(),
        state: admitted.state,
    });
    let closed_early = |reason: &str| {
        shared.observe(|| EdgeEvent::SessionClosed {
            device: device.clone(),
            peer,
            reason: reason.to_owned(),
        });
    };
    let Ok(remembered) = Box::pin(persistent_session::connected(
        &shared,
        &device,
        admitted.connect.clean_session,
    ))
    .await
    else {
        closed_early("gateway database unavailable");
        tracing::error!("cannot read or record the device's session in the gateway database; refusing the session");
        let _ = dev_wr
            .write_all(connack::server_unavailable(admitted.codec))
            .await;
        return;
    };
    let opened = match Box::pin(broker_link::open(&shared, &admitted)).await {
        Ok(mut link) => Box::pin(persistent_session::restore(
            admitted.codec,
            &mut link,
            &remembered,
        ))
        .await
        .map(|restored| {
            if restored {
                tracing::info!("persistent session restored at the broker after a gateway restart");
            }
            link
        }),
        Err(e) => Err(e),
    };
    let broker = match opened {
        Ok(link) => link,
        Err(LinkError::Encode(e)) => {
            closed_early("violation");
            let v = Violation::Protocol(LinkError::Encode(e).to_string());
            Box::pin(violation_before_connect(&shared, &device, peer, &v)).await;
            return;
        }
        Err(e @ (LinkError::Write(_) | LinkError::NoConnAck(_))) => {
            // Recorded like any refusal at CONNECT, so that every session
            // of an authenticated device leaves a row.
            tracing::error!(error = %e, "the embedded broker did not take the session");
            closed_early("broker unavailable");
            Box::pin(refuse_device(
                &shared,
                &device,
                peer,
                "broker_unavailable",
                &e.to_string(),
            ))
            .await;
            let _ = dev_wr
                .write_all(connack::server_unavailable(admitted.codec))
                .await;
            return;
        }
    };
    shared.ctx.metrics.edge.connection("accepted");
    shared.ctx.metrics.edge.active.inc();
    let _online = shared.ctx.recent.connected(&device);
    Box::pin(connected(&shared, &identity, &admitted, peer)).await;
    let end = relay(&shared, &device, &admitted, (dev_rd, dev_wr), buf, broker).await;
    shared.ctx.metrics.edge.active.dec();
    Box::pin(ended(&shared, &device, peer, end)).await;
}

/// Record an accepted connection: log, audit row, `last_seen`.
async fn connected(
    shared: &Shared,
    identity: &PeerIdentity,
    admitted: &Admitted,
    peer: SocketAddr,
) {
    let device = &identity.device_id;
    let state = admitted.state;
    tracing::info!(
        ?state,
        protocol = admitted.codec.version(),
        "device connected"
    );
    let detail = serde_json::json!({
        "peer": peer.to_string(),
        "state": state.as_str(),
        "fingerprint": identity.fingerprint,
    });
    audit(
        shared,
        AuditEvent::new(
            format!("device:{device}"),
            "edge.connect",
            device.as_str(),
            Outcome::Allowed,
        )
        .with_detail(detail),
    )
    .await;
    let registry = shared.ctx.registry.clone();
    let d = device.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = registry.touch_last_seen(&d) {
            tracing::warn!(error = %e, "cannot record last_seen");
        }
    });
}

/// Record how the session ended: log, metric and audit row.
async fn ended(shared: &Shared, device: &DeviceId, peer: SocketAddr, end: End) {
    if let End::Violation(v) = &end {
        shared.observe(|| EdgeEvent::Violation {
            device: device.clone(),
            peer,
            violation: v.clone(),
        });
    }
    shared.observe(|| EdgeEvent::SessionClosed {
        device: device.clone(),
        peer,
        reason: match &end {
            End::Violation(_) => "violation",
            End::Revoked => "revoked",
            End::Closed(why) => why,
            End::Shutdown => "shutdown",
        }
        .to_owned(),
    });
    let event = match end {
        End::Violation(v) => {
            tracing::warn!(reason = v.reason(), detail = %v, "policy violation; device disconnected");
            shared.ctx.metrics.edge.violation(v.reason());
            let mut detail = serde_json::json!({
                "reason": v.reason(), "error": v.to_string(), "peer": peer.to_string(),
            });
            if matches!(v, Violation::RateLimited) {
                let penalty = shared.cooloff.strike(device, std::time::Instant::now());
                tracing::warn!(
                    penalty_s = penalty.as_secs(),
                    "device exceeded its publish rate; its connections are closed until the penalty ends"
                );
                detail["cooloff_seconds"] = penalty.as_secs().into();
            }
            AuditEvent::new(
                format!("device:{device}"),
                "edge.violation",
                device.as_str(),
                Outcome::Refused,
            )
            .with_detail(detail)
        }
        End::Revoked => {
            tracing::warn!("device revoked while connected; disconnected");
            shared.ctx.metrics.edge.connection("revoked_live");
            AuditEvent::new("gateway", "edge.disconnect", device.as_str(), Outcome::Info)
                .with_detail(serde_json::json!({"reason": "revoked", "peer": peer.to_string()}))
        }
        End::Closed(why) => {
            tracing::info!(reason = why, "device disconnected");
            AuditEvent::new(
                format!("device:{device}"),
                "edge.disconnect",
                device.as_str(),
                Outcome::Info,
            )
            .with_detail(serde_json::json!({"reason": why}))
        }
        End::Shutdown => {
            tracing::info!("session closed for shutdown");
            return;
        }
    };
    audit(shared, event).await;
}
