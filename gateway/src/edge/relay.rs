//! The relay of an admitted session between the device and its broker
//! connection.
//!
//! Three parts, each bounded:
//!
//! - the device loop reads the device's packets, has each one inspected
//!   ([`crate::edge::inspect`]), commits telemetry to the sink and only then
//!   forwards the packet, so a PUBACK (which the broker sends) follows the
//!   commit; it also applies registry changes to the live session and the
//!   idle timeout;
//! - a broker reader passes whole broker packets to the device through a
//!   queue of `edge.outbound_queue` packets; a device that leaves it full
//!   for [`SLOW_CONSUMER_GRACE`] is disconnected;
//! - a writer, the only task writing to the device, drains that queue.
//!
//! Whichever part stops first ends the session. The broker connection is
//! dropped before anything is read after a violation, so nothing a device
//! sent after the offending packet reaches the broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use wardgate_protocol::{DeviceId, DeviceMessage, TopicKind};

use super::admission::Admitted;
use super::broker_link::BrokerLink;
use super::events::EdgeEvent;
use super::frame::{take_frame, Frame, PacketKind};
use super::inspect::{Decision, Inspector};
use super::policy::DevicePolicy;
use super::rate_limit::TokenBucket;
use super::shared::Shared;
use super::violation::Violation;
use crate::registry::{DeviceChange, DeviceState};
use crate::sink::AcceptedTelemetry;

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
        broker.rd,
        out_tx,
        broker_max,
        session_end.clone(),
        slow.clone(),
    ));
    let inspector = Inspector::new(
        device.clone(),
        admitted.codec,
        cfg.max_packet_bytes,
        DevicePolicy::new(device.clone(), admitted.state, cfg.max_payload_bytes),
        TokenBucket::new(cfg.rate_per_second, cfg.rate_burst, Instant::now()),
        shared.sink.is_some(),
    );
    let from_device = DeviceLoop {
        shared,
        device,
        rd,
        buf,
        broker_wr: broker.wr,
        inspector,
        changes: shared.ctx.registry.subscribe(),
        idle: idle_timeout(cfg.idle_timeout, admitted.connect.keep_alive),
    };
    // The loop owns the broker's write half and drops it when it returns:
    // nothing more reaches the broker.
    let end = from_device.run(&session_end, &slow).await;
    session_end.cancel();
    let _ = reader.await;
    let _ = writer.await;
    end
}

/// `edge.idle_timeout`, shortened to 1.5 keep-alive intervals if the device
/// asked for a keep-alive.
fn idle_timeout(configured: Duration, keep_alive_secs: u16) -> Duration {
    if keep_alive_secs == 0 {
        configured
    } else {
        configured.min(Duration::from_millis(u64::from(keep_alive_secs) * 1500))
    }
}

/// The writer: the only task writing to the device.
async fn write_to_device<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut out_rx: mpsc::Receiver<Bytes>,
    end: CancellationToken,
) {
    while let Some(bytes) = tokio::select! {
        () = end.cancelled() => None,
        b = out_rx.recv() => b,
    } {
        if wr.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    end.cancel();
}

/// Broker to device: whole frames, through the bounded queue, with
/// back-pressure onto this device's broker connection.
async fn broker_to_device(
    mut broker_rd: OwnedReadHalf,
    out_tx: mpsc::Sender<Bytes>,
    max: usize,
    end: CancellationToken,
    slow: CancellationToken,
) {
    let mut bbuf = BytesMut::with_capacity(4096);
    loop {
        match take_frame(&mut bbuf, max) {
            Ok(Some(f)) => {
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

/// Device to broker: every packet inspected, telemetry committed, then
/// forwarded.
struct DeviceLoop<'a, R> {
    shared: &'a Shared,
    device: &'a DeviceId,
    rd: R,
    buf: BytesMut,
    broker_wr: OwnedWriteHalf,
    inspector: Inspector,
    changes: broadcast::Receiver<DeviceChange>,
    idle: Duration,
}

/// What woke the device loop.
enum Wake {
    End(End),
    Registry(Result<DeviceChange, broadcast::error::RecvError>),
    Read(Result<std::io::Result<usize>, tokio::time::error::Elapsed>),
}

impl<R: AsyncRead + Unpin> DeviceLoop<'_, R> {
    async fn run(mut self, session_end: &CancellationToken, slow: &CancellationToken) -> End {
        let mut deadline = tokio::time::Instant::now() + self.idle;
        loop {
            if let Err(end) = self.forward_buffered().await {
                return end;
            }
            self.buf.reserve(4096);
            let wake = tokio::select! {
                () = self.shared.ctx.shutdown.cancelled() => Wake::End(End::Shutdown),
                () = slow.cancelled() => Wake::End(End::Violation(Violation::SlowConsumer)),
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
                    if let Err(end) = read_outcome(read, &self.buf) {
                        return end;
                    }
                    deadline = tokio::time::Instant::now() + self.idle;
                }
            }
        }
    }

    /// Handle every whole frame already buffered.
    async fn forward_buffered(&mut self) -> Result<(), End> {
        let max = self.shared.ctx.config.edge.max_packet_bytes;
        while let Some(frame) = take_frame(&mut self.buf, max)
            .map_err(|e| End::Violation(Violation::Protocol(e.to_string())))?
        {
            let decision = self
                .inspector
                .inspect(&frame, &self.shared.seqs)
                .map_err(End::Violation)?;
            match decision {
                Decision::Forward => {
                    self.accepted(frame.kind, None, 0, None);
                    self.forward(&frame).await?;
                }
                Decision::Publish {
                    kind,
                    telemetry,
                    message,
                    payload_bytes,
                } => {
                    if let Some(t) = telemetry {
                        commit(self.shared, t).await.map_err(End::Violation)?;
                    }
                    self.shared.ctx.metrics.edge.message(kind.suffix());
                    self.accepted(frame.kind, Some(kind), payload_bytes, Some(message));
                    self.forward(&frame).await?;
                }
                Decision::Disconnect => {
                    self.accepted(frame.kind, None, 0, None);
                    let _ = self.broker_wr.write_all(&frame.bytes).await;
                    return Err(End::Closed("device sent DISCONNECT"));
                }
            }
        }
        Ok(())
    }

    /// Tell the observer a packet passed.
    fn accepted(
        &self,
        kind: PacketKind,
        topic: Option<TopicKind>,
        payload_bytes: usize,
        message: Option<DeviceMessage>,
    ) {
        self.shared.observe(|| EdgeEvent::PacketAccepted {
            device: self.device.clone(),
            kind,
            topic,
            payload_bytes,
            message,
            duplicate: false,
        });
    }

    async fn forward(&mut self, frame: &Frame) -> Result<(), End> {
        self.broker_wr
            .write_all(&frame.bytes)
            .await
            .map_err(|_| End::Closed("broker connection lost"))
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

/// Commit accepted telemetry to the sink, timed; a refusal or failure is
/// not the device's fault, but it must not get a PUBACK.
async fn commit(shared: &Shared, telemetry: AcceptedTelemetry) -> Result<(), Violation> {
    let Some(sink) = &shared.sink else {
        return Ok(());
    };
    let started = Instant::now();
    let result = sink.accept(telemetry).await;
    shared
        .ctx
        .metrics
        .edge
        .sink_seconds
        .observe(started.elapsed().as_secs_f64());
    result.map_err(|e| Violation::NotStored(e.to_string()))
}
