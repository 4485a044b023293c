//! The relay of an admitted session between the device and its broker
//! connection, pipelined so a session keeps reading while its earlier
//! messages commit.
//!
//! Four parts, each bounded:
//!
//! - the device loop reads the device's packets and has each one inspected
//!   ([`crate::edge::inspect`]). A new PUBLISH is handed to the store
//!   ([`crate::sink::TelemetrySink::store`]) at once, so one group commit
//!   holds messages of many devices and many messages of each; every
//!   packet then joins the session's ordered pipeline of at most
//!   [`IN_FLIGHT_WINDOW`] steps (when it is full the loop stops reading: the
//!   fixed window of MQTT 3.1.1, advertised as the receive maximum in the
//!   MQTT 5 CONNACK). It also applies registry changes to the live session
//!   and the idle timeout;
//! - the forwarder takes the pipeline's steps in order: waits for a
//!   message's commit, then forwards it to the broker at QoS 0 and
//!   acknowledges it to the device itself (so every PUBACK follows its
//!   commit, in the device's order, with no broker round trip), or answers
//!   a resend of a stored message with its own PUBACK
//!   ([`crate::edge::replay`]); a message the store refused ends
//!   the session without a PUBACK, and nothing later of that session is
//!   stored;
//! - a broker reader passes whole broker packets to the device through a
//!   queue of `edge.outbound_queue` packets; a device that leaves it full
//!   for [`SLOW_CONSUMER_GRACE`] is disconnected;
//! - a writer, the only task writing to the device, drains that queue.
//!
//! Whichever part stops first ends the session. A violating packet and
//! everything after it never enter the pipeline, so none of it reaches the
//! broker; the steps before it are finished (within [`DRAIN_GRACE`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use wardgate_protocol::{DeviceId, DeviceMessage, TopicKind};

use super::admission::Admitted;
use super::broker_link::BrokerLink;
use super::codec::Codec;
use super::events::EdgeEvent;
use super::frame::{take_frame, Frame, PacketKind};
use super::inspect::{Decision, Inspector};
use super::persistent_session;
use super::replay::{PayloadDigest, SeqVerdict};
use super::shared::Shared;
use super::violation::Violation;
use crate::registry::{DeviceChange, DeviceState};
use crate::sink::{StoreRequest, StoredFuture};
use rumqttc::v5::mqttbytes::v5::{ConnAckProperties, Packet as ClientPacket};

/// How long the bounded broker-to-device queue may stay full before the
/// device is treated as not reading and disconnected.
pub(crate) const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(5);

/// Why a session ended.
pub(crate) enum End {
    /// The device disconnected or the connection dropped.
    Closed(&'static str),
    /// A policy violation.
    Violation(Violation),
    /// The registry revoked the device.
    Revoked,
    /// The gateway is shutting down.
    Shutdown,
}

/// Relay `admitted`'s session until it ends. `buf` holds whatever the
/// device sent after its CONNECT.
pub(crate) async fn relay<R, W>(
    shared: &Arc<Shared>,
    device: &DeviceId,
    admitted: &Admitted,
    (rd, wr): (R, W),
    buf: BytesMut,
    broker: BrokerLink,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &shared.ctx.config.edge;
    let session_end = CancellationToken::new();
    let slow = CancellationToken::new();
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(cfg.outbound_queue);
    let writer = tokio::spawn(write_to_device(wr, out_rx, session_end.clone()));
    let broker_max = shared.ctx.config.broker.max_payload_bytes + 1024;
    let reader = tokio::spawn(broker_to_device(
        (broker.rd, broker.pending),
        out_tx.clone(),
        (admitted.codec, broker_max),
        session_end.clone(),
        slow.clone(),
    ));
    let (steps_tx, steps_rx) = mpsc::channel(usize::from(IN_FLIGHT_WINDOW));
    let forward_done = CancellationToken::new();
    let forwarder = Forwarder {
        shared: shared.clone(),
        device: device.clone(),
        broker_wr: broker.wr,
        to_device: out_tx,
    };
    let mut forward = tokio::spawn({
        let done = forward_done.clone();
        async move {
            let end = forwarder.run(steps_rx).await;
            done.cancel();
            end
        }
    });
    let inspector = Inspector::for_session(shared, device.clone(), admitted.codec, admitted.state);
    let from_device = DeviceLoop {
        shared,
        device,
        rd,
        buf,
        steps: steps_tx,
        inspector,
        changes: shared.ctx.registry.subscribe(),
        idle: idle_timeout(cfg.idle_timeout, admitted.connect.keep_alive),
        persistent: !admitted.connect.clean_session,
        reads: ReadSize::default(),
    };
    let end = from_device.run(&session_end, &slow, &forward_done).await;
    let end = match end {
        // The forwarder stopped first (store refusal, broker gone): its
        // reason is the session's.
        End::Closed(why) if why == FORWARDER_ENDED => forward
            .await
            .unwrap_or(End::Closed("broker connection lost")),
        // Revocation or shutdown: the forwarder (and with it the broker
        // connection) stops now.
        end @ (End::Revoked | End::Shutdown) => {
            forward.abort();
            end
        }
        // Otherwise what was accepted before the end (or before the
        // violation: nothing after it was queued) still goes on.
        end => match tokio::time::timeout(DRAIN_GRACE, &mut forward).await {
            Ok(Ok(v @ End::Violation(_))) if !matches!(end, End::Violation(_)) => v,
            Ok(_) => end,
            Err(_) => {
                forward.abort();
                end
            }
        },
    };
    session_end.cancel();
    let _ = reader.await;
    let _ = writer.await;
    end
}

/// How the device loop says that the forwarder stopped first.
const FORWARDER_ENDED: &str = "forwarder ended";

/// How long an orderly end waits for the steps already in the pipeline.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// `edge.idle_timeout`, shortened to 1.5 keep-alive intervals if the device
/// asked for a keep-alive.
fn idle_timeout(configured: Duration, keep_alive_secs: u16) -> Duration {
    if keep_alive_secs == 0 {
        configured
    } else {
        configured.min(Duration::from_millis(u64::from(keep_alive_secs) * 1500))
    }
}

/// The writer: the only task writing to the device. Whatever is queued when
/// it wakes (PUBACKs of one group commit, offers) leaves in one write: one
/// TLS record and one system call instead of one per packet.
async fn write_to_device<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut out_rx: mpsc::Receiver<Bytes>,
    end: CancellationToken,
) {
    // Grows to the largest batch this device has seen (an idle one: 1).
    let mut queued = Vec::new();
    let mut joined = BytesMut::new();
    loop {
        let n = tokio::select! {
            () = end.cancelled() => 0,
            n = out_rx.recv_many(&mut queued, WRITE_BATCH) => n,
        };
        if n == 0 {
            break;
        }
        let written = if let [one] = &queued[..] {
            wr.write_all(one).await
        } else {
            joined.clear();
            for bytes in &queued {
                joined.extend_from_slice(bytes);
            }
            wr.write_all(&joined).await
        };
        queued.clear();
        if written.is_err() {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    end.cancel();
}

/// Most packets the writer joins into one write.
const WRITE_BATCH: usize = 64;

/// Broker to device: whole frames, through the bounded queue, with
/// back-pressure onto this device's broker connection. `bbuf` holds what
/// [`super::broker_link::open`] already read, the CONNACK first.
async fn broker_to_device(
    (mut broker_rd, mut bbuf): (ReadHalf<DuplexStream>, BytesMut),
    out_tx: mpsc::Sender<Bytes>,
    (codec, max): (Codec, usize),
    end: CancellationToken,
    slow: CancellationToken,
) {
    let mut first = true;
    loop {
        match take_frame(&mut bbuf, max) {
            Ok(Some(mut f)) => {
                if std::mem::take(&mut first) {
                    f.bytes = with_receive_maximum(codec, f.bytes, max);
                }
                // A device that reads nothing for SLOW_CONSUMER_GRACE is dropped.
                match tokio::time::timeout(SLOW_CONSUMER_GRACE, out_tx.send(f.bytes)).await {
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
        // Broker-to-device traffic is sparse and small (PINGRESP, SUBACK,
        // an OTA offer): 1 KiB reads keep an idle session's buffer small; a
        // larger packet grows it as it arrives.
        bbuf.reserve(1024);
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

/// Most steps (packets) of one session between inspection and their
/// forwarding or acknowledgement: the per-device in-flight bound, and the
/// receive maximum advertised to MQTT 5 devices.
pub const IN_FLIGHT_WINDOW: u16 = 32;

/// What an accepted PUBLISH was, for the message counter and the observer.
struct Accepted {
    kind: TopicKind,
    payload_bytes: usize,
    message: DeviceMessage,
}

/// A new PUBLISH in the pipeline.
struct NewPublish {
    frame: Frame,
    seq: u64,
    digest: PayloadDigest,
    stored: Option<(StoredFuture, Instant)>,
    accepted: Accepted,
}

/// One step of the session's ordered pipeline.
enum Step {
    /// Forward as is (SUBSCRIBE, PINGREQ, acknowledgements).
    Forward(Frame),
    /// A new PUBLISH: wait for its commit (if there is a store), then
    /// forward it. Boxed, like `Resend`: the channel allocates room for
    /// 32 steps up front in every session, so a step stays a few words.
    Publish(Box<NewPublish>),
    /// A resend of a stored or in-flight message: acknowledge it again
    /// (QoS 1), once everything before it is done.
    Resend {
        puback: Option<Bytes>,
        accepted: Box<Accepted>,
    },
    /// DISCONNECT: forward it and end.
    Disconnect(Frame),
}

/// The forwarder: the pipeline's steps, in order.
struct Forwarder {
    shared: Arc<Shared>,
    device: DeviceId,
    broker_wr: WriteHalf<DuplexStream>,
    to_device: mpsc::Sender<Bytes>,
}

impl Forwarder {
    async fn run(mut self, mut steps: mpsc::Receiver<Step>) -> End {
        while let Some(step) = steps.recv().await {
            if let Err(end) = self.step(step).await {
                return end;
            }
        }
        End::Closed("device loop ended")
    }

    async fn step(&mut self, step: Step) -> Result<(), End> {
        match step {
            Step::Forward(frame) => {
                self.observe(frame.kind, None, false);
                self.write(&frame).await
            }
            Step::Publish(publish) => {
                let NewPublish {
                    frame,
                    seq,
                    digest,
                    stored,
                    accepted,
                } = *publish;
                if let Some((commit, started)) = stored {
                    let result = commit.await;
                    self.shared
                        .ctx
                        .metrics
                        .edge
                        .sink_seconds
                        .observe(started.elapsed().as_secs_f64());
                    result.map_err(|e| End::Violation(Violation::NotStored(e.to_string())))?;
                }
                self.shared.seqs.stored(&self.device, seq, digest);
                self.shared.ctx.metrics.edge.message(accepted.kind.suffix());
                self.observe(frame.kind, Some(accepted), false);
                // Stored: the edge owns the message now and acknowledges it
                // itself; the broker gets it at QoS 0, so it has no PUBACK
                // of its own to send and every PUBACK the device sees leaves
                // here, in the device's order, right after its commit.
                match (frame.publish_pkid(), frame.publish_at_most_once()) {
                    (Some(pkid), Some(at_most_once)) => {
                        self.write_bytes(&at_most_once).await?;
                        self.to_device
                            .send(puback(pkid))
                            .await
                            .map_err(|_| End::Closed("connection closed"))
                    }
                    _ => self.write(&frame).await,
                }
            }
            Step::Resend { puback, accepted } => {
                tracing::debug!("resend of a stored message acknowledged again");
                self.shared.ctx.metrics.edge.message("resend");
                self.observe(PacketKind::Publish, Some(*accepted), true);
                if let Some(ack) = puback {
                    self.to_device
                        .send(ack)
                        .await
                        .map_err(|_| End::Closed("connection closed"))?;
                }
                Ok(())
            }
            Step::Disconnect(frame) => {
                self.observe(frame.kind, None, false);
                let _ = self.broker_wr.write_all(&frame.bytes).await;
                Err(End::Closed("device sent DISCONNECT"))
            }
        }
    }

    /// Tell the observer a packet passed.
    fn observe(&self, kind: PacketKind, accepted: Option<Accepted>, duplicate: bool) {
        self.shared.observe(|| {
            let (topic, payload_bytes, message) = match accepted {
                Some(a) => (Some(a.kind), a.payload_bytes, Some(a.message)),
                None => (None, 0, None),
            };
            EdgeEvent::PacketAccepted {
                device: self.device.clone(),
                kind,
                topic,
                payload_bytes,
                message,
                duplicate,
            }
        });
    }

    async fn write(&mut self, frame: &Frame) -> Result<(), End> {
        self.write_bytes(&frame.bytes).await
    }

    async fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.broker_wr
            .write_all(bytes)
            .await
            .map_err(|_| End::Closed("broker connection lost"))
    }
}

/// Device side: every packet inspected, new messages handed to the store,
/// all of them queued in order for the forwarder.
struct DeviceLoop<'a, R> {
    shared: &'a Arc<Shared>,
    device: &'a DeviceId,
    rd: R,
    buf: BytesMut,
    steps: mpsc::Sender<Step>,
    inspector: Inspector,
    changes: broadcast::Receiver<DeviceChange>,
    idle: Duration,
    /// Clean session off: subscriptions are remembered.
    persistent: bool,
    reads: ReadSize,
}

/// How much the device loop reserves for its next read: 1 KiB for a device
/// that sends a reading now and then, doubling to 16 KiB while reads fill
/// what was reserved (a device sending flat out, so it reads in large
/// chunks), halving again when they come back small. With 10,000 mostly
/// quiet devices a fixed 4 KiB was 40 MB of buffers holding nothing.
#[derive(Debug, Clone, Copy)]
struct ReadSize(usize);

impl ReadSize {
    const MIN: usize = 1024;
    const MAX: usize = 16 * 1024;

    /// Make room in `buf` for the next read; returns the room made. An
    /// empty buffer much larger than the next read is released first
    /// (frames split off it keep their bytes).
    fn prepare(self, buf: &mut BytesMut) -> usize {
        if buf.is_empty() && buf.capacity() > 4 * self.0 {
            *buf = BytesMut::new();
        }
        buf.reserve(self.0);
        buf.capacity() - buf.len()
    }

    /// Adjust to a read of `n` bytes into `room`.
    fn after_read(&mut self, n: usize, room: usize) {
        if n >= room {
            self.0 = (self.0 * 2).min(Self::MAX);
        } else if n < self.0 / 4 {
            self.0 = (self.0 / 2).max(Self::MIN);
        }
    }
}

impl Default for ReadSize {
    fn default() -> Self {
        Self(Self::MIN)
    }
}

/// What woke the device loop.
enum Wake {
    End(End),
    Registry(Result<DeviceChange, broadcast::error::RecvError>),
    Read(Result<std::io::Result<usize>, tokio::time::error::Elapsed>),
}

impl<R: AsyncRead + Unpin> DeviceLoop<'_, R> {
    async fn run(
        mut self,
        session_end: &CancellationToken,
        slow: &CancellationToken,
        forward_done: &CancellationToken,
    ) -> End {
        let mut deadline = tokio::time::Instant::now() + self.idle;
        loop {
            if let Err(end) = self.queue_buffered(forward_done).await {
                return end;
            }
            let room = self.reads.prepare(&mut self.buf);
            let wake = tokio::select! {
                () = self.shared.ctx.shutdown.cancelled() => Wake::End(End::Shutdown),
                () = slow.cancelled() => Wake::End(End::Violation(Violation::SlowConsumer)),
                () = forward_done.cancelled() => Wake::End(End::Closed(FORWARDER_ENDED)),
                () = session_end.cancelled() => Wake::End(End::Closed("connection closed")),
                change = self.changes.recv() => Wake::Registry(change),
                read = tokio::time::timeout_at(deadline, self.rd.read_buf(&mut self.buf)) => Wake::Read(read),
            };
            match wake {
                Wake::End(end) => return end,
                Wake::Registry(change) => {
                    if let Some(end) = self.apply_change(change).await {
                        return end;
                    }
                }
                Wake::Read(read) => {
                    if let Ok(Ok(n)) = read {
                        self.reads.after_read(n, room);
                    }
                    if let Err(end) = read_outcome(read, &self.buf) {
                        return end;
                    }
                    deadline = tokio::time::Instant::now() + self.idle;
                }
            }
        }
    }

    /// Inspect every whole frame already buffered and queue its step.
    async fn queue_buffered(&mut self, forward_done: &CancellationToken) -> Result<(), End> {
        let max = self.shared.ctx.config.edge.max_packet_bytes;
        while let Some(frame) = take_frame(&mut self.buf, max)
            .map_err(|e| End::Violation(Violation::Protocol(e.to_string())))?
        {
            let decision = self
                .inspector
                .inspect(&frame, &self.shared.seqs)
                .map_err(End::Violation)?;
            let (step, last) = match decision {
                Decision::Forward => (Step::Forward(frame), false),
                Decision::Subscriptions {
                    subscribed,
                    unsubscribed,
                } => {
                    if self.persistent {
                        persistent_session::subscriptions_changed(
                            self.shared,
                            self.device,
                            subscribed,
                            unsubscribed,
                        )
                        .await;
                    }
                    (Step::Forward(frame), false)
                }
                Decision::Publish {
                    verdict,
                    seq,
                    digest,
                    after,
                    pkid,
                    kind,
                    telemetry,
                    message,
                    payload_bytes,
                } => {
                    let accepted = Accepted {
                        kind,
                        payload_bytes,
                        message,
                    };
                    let step = match verdict {
                        SeqVerdict::Resend => Step::Resend {
                            puback: pkid.map(puback),
                            accepted: Box::new(accepted),
                        },
                        SeqVerdict::New => Step::Publish(Box::new(NewPublish {
                            frame,
                            seq,
                            digest,
                            stored: self
                                .submit(StoreRequest {
                                    device_id: self.device.clone(),
                                    seq,
                                    digest,
                                    after,
                                    telemetry,
                                })
                                .await,
                            accepted,
                        })),
                    };
                    (step, false)
                }
                Decision::Disconnect => (Step::Disconnect(frame), true),
            };
            // A full pipeline stops reading: the in-flight window.
            let sent = tokio::select! {
                r = self.steps.send(step) => r.is_ok(),
                () = forward_done.cancelled() => false,
                () = self.shared.ctx.shutdown.cancelled() => return Err(End::Shutdown),
            };
            if !sent {
                return Err(End::Closed(FORWARDER_ENDED));
            }
            if last {
                return Err(End::Closed("device sent DISCONNECT"));
            }
        }
        Ok(())
    }

    /// Queue a new message for its commit now, in the session's order, so
    /// the commit runs while the session reads on; `None` without a store.
    async fn submit(&self, request: StoreRequest) -> Option<(StoredFuture, Instant)> {
        let sink = self.shared.sink.as_ref()?;
        let started = Instant::now();
        Some((sink.submit(request).await, started))
    }

    /// Apply a registry change to the live session; `Some` if it ends it.
    async fn apply_change(
        &mut self,
        change: Result<DeviceChange, broadcast::error::RecvError>,
    ) -> Option<End> {
        let new_state = match change {
            Ok(c) if &c.device == self.device => Some(c.state),
            Ok(_) | Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                match self
                    .shared
                    .ctx
                    .registry
                    .get_async(self.device.clone())
                    .await
                {
                    Ok(Some(r)) => Some(r.state),
                    Ok(None) => Some(DeviceState::Revoked),
                    Err(_) => None,
                }
            }
        };
        match new_state {
            Some(DeviceState::Revoked) => Some(End::Revoked),
            Some(s) => {
                tracing::info!(state = %s, "registry state applied to live session");
                self.inspector.policy_mut().set_state(s);
                None
            }
            None => None,
        }
    }
}

/// Whether a read from the device lets the session go on.
fn read_outcome(
    read: Result<std::io::Result<usize>, tokio::time::error::Elapsed>,
    buf: &BytesMut,
) -> Result<(), End> {
    match read {
        Err(_) => Err(End::Closed("idle timeout")),
        Ok(Ok(0)) if buf.is_empty() => Err(End::Closed("device closed the connection")),
        Ok(Ok(0)) => Err(End::Violation(Violation::Protocol(format!(
            "connection closed inside a packet ({} bytes buffered)",
            buf.len()
        )))),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(End::Closed("device closed the connection"))
        }
        Ok(Err(_)) => Err(End::Closed("read error")),
    }
}

/// The broker's CONNACK with the session's receive maximum
/// ([`IN_FLIGHT_WINDOW`]) for an MQTT 5 device; anything else unchanged.
///
/// `rumqttd`'s v5 codec reads only what clients send (its `read_mut`
/// reaches `unreachable!()` on a CONNACK), so the CONNACK is read and
/// written again with `rumqttc`'s client-side v5 codec.
fn with_receive_maximum(codec: Codec, bytes: Bytes, max: usize) -> Bytes {
    if codec != Codec::V5 {
        return bytes;
    }
    let max = u32::try_from(max).ok();
    let Ok(ClientPacket::ConnAck(mut ack)) =
        ClientPacket::read(&mut BytesMut::from(&bytes[..]), max)
    else {
        return bytes;
    };
    ack.properties
        .get_or_insert_with(empty_connack_properties)
        .receive_max = Some(IN_FLIGHT_WINDOW);
    let mut out = BytesMut::new();
    match ClientPacket::ConnAck(ack).write(&mut out, max) {
        Ok(_) => out.freeze(),
        Err(_) => bytes,
    }
}

fn empty_connack_properties() -> ConnAckProperties {
    ConnAckProperties {
        session_expiry_interval: None,
        receive_max: None,
        max_qos: None,
        retain_available: None,
        max_packet_size: None,
        assigned_client_identifier: None,
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: None,
        shared_subscription_available: None,
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    }
}

/// A PUBACK for packet id `pkid` in the session's protocol version (the
/// reason code may be omitted for success in MQTT 5, section 3.4.2.1).
fn puback(pkid: u16) -> Bytes {
    let [hi, lo] = pkid.to_be_bytes();
    Bytes::copy_from_slice(&[0x40, 0x02, hi, lo])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttd::protocol::{ConnAck, ConnectReturnCode, Packet};

    /// The broker's CONNACK as `rumqttd` writes it.
    fn broker_connack(codec: Codec) -> Bytes {
        let ack = ConnAck {
            session_present: false,
            code: ConnectReturnCode::Success,
        };
        codec.encode(Packet::ConnAck(ack, None)).unwrap().freeze()
    }

    #[test]
    fn reads_grow_while_they_fill_and_shrink_back_when_the_device_goes_quiet() {
        let mut reads = ReadSize::default();
        let mut buf = BytesMut::new();
        // Flat out: every read fills the room, up to the ceiling.
        for _ in 0..10 {
            let room = reads.prepare(&mut buf);
            assert!(room >= reads.0);
            reads.after_read(room, room);
        }
        assert_eq!(reads.0, ReadSize::MAX);
        let room = reads.prepare(&mut buf);
        assert!(buf.capacity() >= ReadSize::MAX);
        // Quiet again: small readings halve it back to the floor...
        for _ in 0..10 {
            reads.after_read(200, room);
        }
        assert_eq!(reads.0, ReadSize::MIN);
        // ...and the large, empty buffer is given back.
        reads.prepare(&mut buf);
        assert!(buf.capacity() < 4 * ReadSize::MIN, "{}", buf.capacity());
    }

    #[test]
    fn a_buffer_holding_part_of_a_packet_is_kept() {
        let reads = ReadSize::default();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(&[0x30, 0x80]);
        reads.prepare(&mut buf);
        assert_eq!(&buf[..], &[0x30, 0x80]);
        assert!(buf.capacity() >= 64 * 1024);
    }

    #[test]
    fn an_mqtt_5_connack_advertises_the_in_flight_window() {
        let bytes = with_receive_maximum(Codec::V5, broker_connack(Codec::V5), 65_536);
        let Ok(ClientPacket::ConnAck(ack)) =
            ClientPacket::read(&mut BytesMut::from(&bytes[..]), None)
        else {
            panic!("not a CONNACK: {bytes:02x?}");
        };
        assert_eq!(ack.properties.unwrap().receive_max, Some(IN_FLIGHT_WINDOW));
        assert!(!ack.session_present);
    }

    #[test]
    fn an_mqtt_3_connack_and_other_bytes_pass_unchanged() {
        let v4 = broker_connack(Codec::V4);
        assert_eq!(with_receive_maximum(Codec::V4, v4.clone(), 65_536), v4);
        let not_connack = Bytes::from_static(&[0xd0, 0x00]);
        assert_eq!(
            with_receive_maximum(Codec::V5, not_connack.clone(), 65_536),
            not_connack
        );
    }
}
