//! One device session: handshake, CONNECT, then the policed relay to the
//! broker. See the module docs of [`crate::edge`] for the sequence.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::v5::V5;
use rumqttd::protocol::{Login, Packet, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wardgate_protocol::{DeviceId, DeviceMessage};

use crate::audit::{AuditEvent, Outcome};
use crate::edge::frame::{connect_protocol_level, take_frame, Frame, PacketKind};
use crate::edge::policy::{check_connect, DevicePolicy, TokenBucket, Violation};
use crate::edge::tls::{peer_identity, PeerIdentity};
use crate::edge::Shared;
use crate::registry::DeviceState;
use crate::sink::AcceptedTelemetry;

/// MQTT codec of the session, chosen from the CONNECT's protocol level.
#[derive(Clone, Copy)]
enum Codec {
    V4,
    V5,
}

impl Codec {
    fn decode(self, frame: &Frame, max: usize) -> Result<Packet, Violation> {
        let mut buf = BytesMut::from(&frame.bytes[..]);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match self {
            Codec::V4 => V4.read_mut(&mut buf, max),
            Codec::V5 => V5.read_mut(&mut buf, max),
        }));
        match result {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(Violation::Protocol(format!(
                "malformed {:?} packet: {e}",
                frame.kind
            ))),
            Err(_) => Err(Violation::Protocol(format!(
                "undecodable {:?} packet",
                frame.kind
            ))),
        }
    }

    fn encode(self, packet: Packet) -> Result<BytesMut, String> {
        let mut out = BytesMut::new();
        match self {
            Codec::V4 => V4.write(packet, &mut out),
            Codec::V5 => V5.write(packet, &mut out),
        }
        .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// CONNACK refusing with "not authorized".
    fn refuse_connack(self) -> &'static [u8] {
        match self {
            Codec::V4 => &[0x20, 0x02, 0x00, 0x05],
            Codec::V5 => &[0x20, 0x03, 0x00, 0x87, 0x00],
        }
    }
}

type DeviceRead = ReadHalf<TlsStream<TcpStream>>;

/// How long the bounded broker-to-device queue may stay full before the
/// device is treated as not reading and disconnected.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(5);

/// Why a session ended.
enum End {
    /// The device disconnected or the connection dropped.
    Closed(&'static str),
    /// A policy violation.
    Violation(Violation),
    /// The registry revoked the device.
    Revoked,
    /// The gateway is shutting down.
    Shutdown,
}

async fn audit(shared: &Shared, event: AuditEvent) {
    if let Err(e) = shared.ctx.audit.append_async(event).await {
        tracing::error!(error = %e, "cannot write audit row; check the gateway database");
    }
}

/// Run one session to its end. Never panics on peer input; every outcome is
/// logged, audited and counted.
pub(crate) async fn run(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let cfg = &shared.ctx.config.edge;
    let handshake = tokio::time::timeout(cfg.handshake_timeout, shared.acceptor.accept(tcp)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            refuse_peer(
                &shared,
                peer,
                "tls_handshake",
                &wardgate_tls::describe::handshake_error(&e, &crate::edge::tls::HANDSHAKE),
            )
            .await;
            return;
        }
        Err(_) => {
            refuse_peer(
                &shared,
                peer,
                "tls_timeout",
                "handshake not completed in time",
            )
            .await;
            return;
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
            refuse_peer(&shared, peer, "certificate_identity", &e.to_string()).await;
            return;
        }
        None => {
            refuse_peer(
                &shared,
                peer,
                "no_client_certificate",
                "no client certificate",
            )
            .await;
            return;
        }
    };
    let span = tracing::info_span!("device", device_id = %identity.device_id, %peer);
    device_session(shared, tls, identity, peer)
        .instrument(span)
        .await;
}

async fn refuse_peer(shared: &Shared, peer: SocketAddr, reason: &str, detail: &str) {
    tracing::warn!(%peer, reason, detail, "device connection refused before MQTT");
    shared.ctx.metrics.edge.connection(reason);
    audit(
        shared,
        AuditEvent::new(
            format!("peer:{peer}"),
            "edge.tls",
            peer.ip().to_string(),
            Outcome::Refused,
        )
        .with_detail(serde_json::json!({"reason": reason, "error": detail})),
    )
    .await;
}

async fn refuse_device(
    shared: &Shared,
    device: &DeviceId,
    peer: SocketAddr,
    action: &str,
    reason: &str,
    detail: &str,
) {
    tracing::warn!(reason, detail, "device refused");
    shared.ctx.metrics.edge.connection(reason);
    audit(
        shared,
        AuditEvent::new(
            format!("device:{device}"),
            action,
            device.as_str(),
            Outcome::Refused,
        )
        .with_detail(
            serde_json::json!({"reason": reason, "error": detail, "peer": peer.to_string()}),
        ),
    )
    .await;
}

/// Read until one whole frame is buffered (or EOF / error).
async fn read_frame(
    rd: &mut DeviceRead,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Frame>, Violation> {
    loop {
        if let Some(f) = take_frame(buf, max).map_err(|e| Violation::Protocol(e.to_string()))? {
            return Ok(Some(f));
        }
        buf.reserve(4096);
        match rd.read_buf(buf).await {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => {
                return Err(Violation::Protocol(format!(
                    "connection closed inside a packet ({} bytes buffered)",
                    buf.len()
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(Violation::Protocol(format!("read error: {e}"))),
        }
    }
}

#[allow(clippy::too_many_lines)]
async fn device_session(
    shared: Arc<Shared>,
    tls: TlsStream<TcpStream>,
    identity: PeerIdentity,
    peer: SocketAddr,
) {
    let cfg = shared.ctx.config.edge.clone();
    let device = identity.device_id.clone();
    let (mut dev_rd, mut dev_wr) = tokio::io::split(tls);
    let mut buf = BytesMut::with_capacity(4096);

    // --- CONNECT -----------------------------------------------------------
    let first = tokio::time::timeout(
        cfg.connect_timeout,
        read_frame(&mut dev_rd, &mut buf, cfg.max_packet_bytes),
    )
    .await;
    let frame = match first {
        Ok(Ok(Some(f))) if f.kind == PacketKind::Connect => f,
        Ok(Ok(Some(f))) => {
            let v = Violation::Protocol(format!("first packet is {:?}, not CONNECT", f.kind));
            violation_before_connect(&shared, &device, peer, &v).await;
            return;
        }
        Ok(Ok(None)) => {
            refuse_device(
                &shared,
                &device,
                peer,
                "edge.connect",
                "closed_before_connect",
                "closed before CONNECT",
            )
            .await;
            return;
        }
        Ok(Err(v)) => {
            violation_before_connect(&shared, &device, peer, &v).await;
            return;
        }
        Err(_) => {
            refuse_device(
                &shared,
                &device,
                peer,
                "edge.connect",
                "connect_timeout",
                "no CONNECT within edge.connect_timeout",
            )
            .await;
            return;
        }
    };
    let codec = match connect_protocol_level(&frame) {
        Some(4) => Codec::V4,
        Some(5) => Codec::V5,
        level => {
            let _ = dev_wr.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            refuse_device(
                &shared,
                &device,
                peer,
                "edge.connect",
                "unsupported_protocol",
                &format!("protocol level {level:?}; MQTT 3.1.1 (4) or 5 required"),
            )
            .await;
            return;
        }
    };
    let packet = match codec.decode(&frame, cfg.max_packet_bytes) {
        Ok(p) => p,
        Err(v) => {
            violation_before_connect(&shared, &device, peer, &v).await;
            return;
        }
    };
    let Packet::Connect(connect, props, will, will_props, _login) = packet else {
        violation_before_connect(
            &shared,
            &device,
            peer,
            &Violation::Protocol("CONNECT did not decode as CONNECT".into()),
        )
        .await;
        return;
    };
    let record = match shared.ctx.registry.get_async(device.clone()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "registry lookup failed");
            let _ = dev_wr.write_all(codec.refuse_connack()).await;
            return;
        }
    };
    let state = match check_connect(
        &identity,
        &connect.client_id,
        record.as_ref(),
        will.is_some(),
    ) {
        Ok(s) => s,
        Err(refusal) => {
            let _ = dev_wr.write_all(codec.refuse_connack()).await;
            let _ = dev_wr.shutdown().await;
            refuse_device(
                &shared,
                &device,
                peer,
                "edge.connect",
                refusal.reason(),
                &refusal.to_string(),
            )
            .await;
            return;
        }
    };

    shared
        .seqs
        .seed(&device, record.as_ref().and_then(|r| r.last_seq));

    // --- broker connection -------------------------------------------------
    let broker_addr = match codec {
        Codec::V4 => shared.broker.v4_addr,
        Codec::V5 => shared.broker.v5_addr,
    };
    let login = Login {
        username: shared.broker.credentials.username.clone(),
        password: shared.broker.credentials.password.clone(),
    };
    let connect_bytes = match codec.encode(Packet::Connect(
        connect.clone(),
        props,
        will,
        will_props,
        Some(login),
    )) {
        Ok(b) => b,
        Err(e) => {
            violation_before_connect(
                &shared,
                &device,
                peer,
                &Violation::Protocol(format!("CONNECT cannot be re-encoded: {e}")),
            )
            .await;
            return;
        }
    };
    let broker = match TcpStream::connect(broker_addr).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the embedded broker");
            let _ = dev_wr.write_all(&[0x20, 0x02, 0x00, 0x03]).await;
            return;
        }
    };
    let _ = broker.set_nodelay(true);
    let (mut broker_rd, mut broker_wr) = broker.into_split();
    if let Err(e) = broker_wr.write_all(&connect_bytes).await {
        tracing::error!(error = %e, "cannot write CONNECT to the embedded broker");
        return;
    }
    shared.ctx.metrics.edge.connection("accepted");
    shared.ctx.metrics.edge.active.inc();
    tracing::info!(
        ?state,
        protocol = if matches!(codec, Codec::V4) {
            "3.1.1"
        } else {
            "5"
        },
        "device connected"
    );
    audit(
        &shared,
        AuditEvent::new(format!("device:{device}"), "edge.connect", device.as_str(), Outcome::Allowed).with_detail(
            serde_json::json!({"peer": peer.to_string(), "state": state.as_str(), "fingerprint": identity.fingerprint}),
        ),
    )
    .await;
    {
        let registry = shared.ctx.registry.clone();
        let d = device.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = registry.touch_last_seen(&d) {
                tracing::warn!(error = %e, "cannot record last_seen");
            }
        });
    }

    // --- relay -------------------------------------------------------------
    let session_end = CancellationToken::new();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(cfg.outbound_queue);
    // Writer: the only task writing to the device.
    let writer = tokio::spawn({
        let end = session_end.clone();
        async move {
            while let Some(bytes) = tokio::select! {
                () = end.cancelled() => None,
                b = out_rx.recv() => b,
            } {
                if dev_wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), dev_wr.shutdown()).await;
            end.cancel();
        }
    });
    // Broker -> device: whole frames, through the bounded queue.
    let slow = CancellationToken::new();
    let broker_max = shared.ctx.config.broker.max_payload_bytes + 1024;
    let reader = tokio::spawn({
        let end = session_end.clone();
        let slow = slow.clone();
        async move {
            let mut bbuf = BytesMut::with_capacity(4096);
            loop {
                match take_frame(&mut bbuf, broker_max) {
                    Ok(Some(f)) => {
                        // Back-pressure onto this device's broker connection;
                        // a device that reads nothing for SLOW_CONSUMER_GRACE
                        // is dropped.
                        match tokio::time::timeout(SLOW_CONSUMER_GRACE, out_tx.send(f.bytes)).await
                        {
                            Ok(Ok(())) => continue,
                            Ok(Err(_)) => {}
                            Err(_) => slow.cancel(),
                        }
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "unexpected data from the embedded broker");
                        break;
                    }
                }
                bbuf.reserve(4096);
                let n = tokio::select! {
                    () = end.cancelled() => break,
                    r = broker_rd.read_buf(&mut bbuf) => r,
                };
                if !matches!(n, Ok(n) if n > 0) {
                    break;
                }
            }
            end.cancel();
        }
    });

    let mut policy = DevicePolicy::new(device.clone(), state, cfg.max_payload_bytes);
    let mut bucket = TokenBucket::new(cfg.rate_per_second, cfg.rate_burst, Instant::now());
    let mut changes = shared.ctx.registry.subscribe();
    let idle = if connect.keep_alive == 0 {
        cfg.idle_timeout
    } else {
        cfg.idle_timeout
            .min(Duration::from_millis(u64::from(connect.keep_alive) * 1500))
    };
    let mut deadline = tokio::time::Instant::now() + idle;

    let end = 'session: loop {
        // Handle every whole frame already buffered.
        loop {
            let frame = match take_frame(&mut buf, cfg.max_packet_bytes) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => break 'session End::Violation(Violation::Protocol(e.to_string())),
            };
            match handle_frame(&shared, &device, codec, &frame, &mut policy, &mut bucket).await {
                Ok(Forward::Yes) => {
                    if broker_wr.write_all(&frame.bytes).await.is_err() {
                        break 'session End::Closed("broker connection lost");
                    }
                }
                Ok(Forward::Disconnect) => {
                    let _ = broker_wr.write_all(&frame.bytes).await;
                    break 'session End::Closed("device sent DISCONNECT");
                }
                Err(v) => break 'session End::Violation(v),
            }
        }
        buf.reserve(4096);
        tokio::select! {
            () = shared.ctx.shutdown.cancelled() => break End::Shutdown,
            () = slow.cancelled() => break End::Violation(Violation::SlowConsumer),
            () = session_end.cancelled() => break End::Closed("connection closed"),
            change = changes.recv() => {
                let new_state = match change {
                    Ok(c) if c.device == device => Some(c.state),
                    Ok(_) => None,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        match shared.ctx.registry.get_async(device.clone()).await {
                            Ok(Some(r)) => Some(r.state),
                            Ok(None) => Some(DeviceState::Revoked),
                            Err(_) => None,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                };
                match new_state {
                    Some(DeviceState::Revoked) => break End::Revoked,
                    Some(s) => {
                        tracing::info!(state = %s, "registry state applied to live session");
                        policy.set_state(s);
                    }
                    None => {}
                }
            }
            read = tokio::time::timeout_at(deadline, dev_rd.read_buf(&mut buf)) => {
                match read {
                    Err(_) => break End::Closed("idle timeout"),
                    Ok(Ok(0)) if buf.is_empty() => break End::Closed("device closed the connection"),
                    Ok(Ok(0)) => break End::Violation(Violation::Protocol(format!(
                        "connection closed inside a packet ({} bytes buffered)", buf.len()))),
                    Ok(Ok(_)) => deadline = tokio::time::Instant::now() + idle,
                    Ok(Err(e)) => break End::Closed(if e.kind() == std::io::ErrorKind::UnexpectedEof { "device closed the connection" } else { "read error" }),
                }
            }
        }
    };

    // Nothing more reaches the broker: drop our side of it first.
    drop(broker_wr);
    session_end.cancel();
    let _ = reader.await;
    let _ = writer.await;
    shared.ctx.metrics.edge.active.dec();
    match end {
        End::Violation(v) => {
            tracing::warn!(reason = v.reason(), detail = %v, "policy violation; device disconnected");
            shared.ctx.metrics.edge.violation(v.reason());
            audit(
                &shared,
                AuditEvent::new(format!("device:{device}"), "edge.violation", device.as_str(), Outcome::Refused)
                    .with_detail(serde_json::json!({"reason": v.reason(), "error": v.to_string(), "peer": peer.to_string()})),
            )
            .await;
        }
        End::Revoked => {
            tracing::warn!("device revoked while connected; disconnected");
            shared.ctx.metrics.edge.connection("revoked_live");
            audit(
                &shared,
                AuditEvent::new("gateway", "edge.disconnect", device.as_str(), Outcome::Info)
                    .with_detail(
                        serde_json::json!({"reason": "revoked", "peer": peer.to_string()}),
                    ),
            )
            .await;
        }
        End::Closed(why) => {
            tracing::info!(reason = why, "device disconnected");
            audit(
                &shared,
                AuditEvent::new(
                    format!("device:{device}"),
                    "edge.disconnect",
                    device.as_str(),
                    Outcome::Info,
                )
                .with_detail(serde_json::json!({"reason": why})),
            )
            .await;
        }
        End::Shutdown => tracing::info!("session closed for shutdown"),
    }
    if let Some(seq) = shared.seqs.last(&device) {
        let registry = shared.ctx.registry.clone();
        let d = device.clone();
        let saved = tokio::task::spawn_blocking(move || registry.save_last_seq(&d, seq)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::error!("cannot save the device's last seq; a replay after restart may pass");
        }
    }
}

async fn violation_before_connect(
    shared: &Shared,
    device: &DeviceId,
    peer: SocketAddr,
    v: &Violation,
) {
    shared.ctx.metrics.edge.violation(v.reason());
    refuse_device(
        shared,
        device,
        peer,
        "edge.violation",
        v.reason(),
        &v.to_string(),
    )
    .await;
}

enum Forward {
    Yes,
    Disconnect,
}

/// Decide one device packet (and commit telemetry to the sink).
async fn handle_frame(
    shared: &Shared,
    device: &DeviceId,
    codec: Codec,
    frame: &Frame,
    policy: &mut DevicePolicy,
    bucket: &mut TokenBucket,
) -> Result<Forward, Violation> {
    let max = shared.ctx.config.edge.max_packet_bytes;
    match frame.kind {
        PacketKind::Publish => {
            if !bucket.try_take(Instant::now()) {
                return Err(Violation::RateLimited);
            }
            let Packet::Publish(publish, props) = codec.decode(frame, max)? else {
                return Err(Violation::Protocol("PUBLISH did not decode".into()));
            };
            if props.as_ref().is_some_and(|p| p.topic_alias.is_some()) {
                return Err(Violation::TopicAlias);
            }
            let topic = std::str::from_utf8(&publish.topic)
                .map_err(|_| Violation::Protocol("topic is not UTF-8".into()))?;
            let (kind, message) = policy.check_publish(
                topic,
                frame.publish_qos(),
                frame.publish_retain(),
                &publish.payload,
            )?;
            shared.seqs.advance(device, message.seq())?;
            if let (DeviceMessage::Telemetry(t), Some(sink)) = (&message, &shared.sink) {
                let started = Instant::now();
                let accepted = AcceptedTelemetry {
                    device_id: device.to_string(),
                    seq: t.seq,
                    topic: topic.to_owned(),
                    payload: publish.payload.clone(),
                    received_at: chrono::Utc::now(),
                };
                let result = sink.accept(accepted).await;
                shared
                    .ctx
                    .metrics
                    .edge
                    .sink_seconds
                    .observe(started.elapsed().as_secs_f64());
                if let Err(e) = result {
                    // Not the device's fault, but it must not get a PUBACK.
                    return Err(Violation::NotStored(e.to_string()));
                }
            }
            shared.ctx.metrics.edge.message(kind.suffix());
            Ok(Forward::Yes)
        }
        PacketKind::Subscribe => {
            let Packet::Subscribe(sub, _) = codec.decode(frame, max)? else {
                return Err(Violation::Protocol("SUBSCRIBE did not decode".into()));
            };
            for f in &sub.filters {
                policy.check_filter(&f.path)?;
            }
            Ok(Forward::Yes)
        }
        PacketKind::Unsubscribe => {
            let Packet::Unsubscribe(unsub, _) = codec.decode(frame, max)? else {
                return Err(Violation::Protocol("UNSUBSCRIBE did not decode".into()));
            };
            for f in &unsub.filters {
                policy.check_filter(f)?;
            }
            Ok(Forward::Yes)
        }
        PacketKind::PubAck
        | PacketKind::PubRec
        | PacketKind::PubRel
        | PacketKind::PubComp
        | PacketKind::PingReq => {
            codec.decode(frame, max)?;
            Ok(Forward::Yes)
        }
        PacketKind::Disconnect => Ok(Forward::Disconnect),
        other => Err(Violation::Protocol(format!(
            "{other:?} is not allowed from a device here"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever bytes a device sends, framing plus decoding with either
        /// codec returns a packet or a violation; it never panics.
        #[test]
        fn decoding_network_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = take_frame(&mut buf, 1024) {
                let _ = Codec::V4.decode(&frame, 1024);
                let _ = Codec::V5.decode(&frame, 1024);
                let _ = connect_protocol_level(&frame);
            }
        }

        /// Valid PUBLISH frames with arbitrary topics and payloads decode to
        /// the same topic and payload.
        #[test]
        fn publish_frames_decode_faithfully(topic in "[a-z/]{1,40}", payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut body = Vec::new();
            body.extend(u16::try_from(topic.len()).unwrap().to_be_bytes());
            body.extend(topic.as_bytes());
            body.extend(7u16.to_be_bytes());
            body.extend(&payload);
            let mut packet = vec![0x32];
            packet.extend(crate::edge::frame::encode_remaining_length(body.len()));
            packet.extend(body);
            let mut buf = BytesMut::from(&packet[..]);
            let frame = take_frame(&mut buf, 4096).unwrap().unwrap();
            prop_assert_eq!(frame.publish_qos(), 1);
            match Codec::V4.decode(&frame, 4096) {
                Ok(Packet::Publish(p, _)) => {
                    prop_assert_eq!(&p.topic[..], topic.as_bytes());
                    prop_assert_eq!(&p.payload[..], &payload[..]);
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
