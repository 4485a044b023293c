//! The session's own connection to the embedded broker.
//!
//! Each admitted device gets one in-process connection to the broker
//! ([`crate::broker::BrokerHandle::connect`]) of its protocol version. The
//! device's CONNECT is passed on without any username or password it sent:
//! devices are admitted by their certificates, and nothing else can reach
//! the broker.
//!
//! [`open`] returns only once the broker has answered the CONNACK, so the
//! device's next packet is not read before the broker's link for it has
//! started. (`rumqttd` 0.20 as published left a will handler behind when a
//! connection dropped before that point, and the next CONNECT of the same
//! client id then took the broker down, bytebeamio/rumqtt#1062; the
//! vendored copy fixes that, and this keeps the edge off that path anyway.)

use std::time::Duration;

use bytes::BytesMut;
use rumqttd::protocol::Packet;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::admission::Admitted;
use super::codec::Codec;
use super::frame::{take_frame, PacketKind};
use super::shared::Shared;
use crate::broker::MqttVersion;

/// Why the broker connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The CONNECT could not be encoded again (a device fault).
    #[error("CONNECT cannot be re-encoded: {0}")]
    Encode(#[source] rumqttd::protocol::Error),
    /// The CONNECT could not be written to the broker.
    #[error("cannot write CONNECT to the embedded broker: {0}")]
    Write(#[source] std::io::Error),
    /// The broker did not answer the CONNECT with a CONNACK in time.
    #[error("the embedded broker did not answer CONNECT within {CONNACK_TIMEOUT:?}: {0}")]
    NoConnAck(String),
}

/// How long the broker may take to answer a CONNECT. It answers in
/// microseconds unless it is overloaded or broken.
const CONNACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Both halves of an open broker connection, CONNECT sent and answered.
pub(crate) struct BrokerLink {
    /// Broker to device.
    pub(crate) rd: ReadHalf<DuplexStream>,
    /// Device to broker.
    pub(crate) wr: WriteHalf<DuplexStream>,
    /// What the broker sent so far, its CONNACK first: for the device.
    pub(crate) pending: BytesMut,
}

/// Connect to the broker for `admitted` and send its CONNECT, without the
/// device's login.
pub(crate) async fn open(shared: &Shared, admitted: &Admitted) -> Result<BrokerLink, LinkError> {
    let version = match admitted.codec {
        Codec::V4 => MqttVersion::V4,
        Codec::V5 => MqttVersion::V5,
    };
    let mut connect = admitted.connect.clone();
    // A keep-alive of 0 (none) is legal MQTT, but rumqttd closes such a
    // connection without a CONNACK. The edge enforces the device's idle
    // timeout itself (`edge.idle_timeout`), so the broker may wait longest.
    if connect.keep_alive == 0 {
        connect.keep_alive = u16::MAX;
    }
    let connect_bytes = admitted
        .codec
        .encode(Packet::Connect(
            connect,
            admitted.props.clone(),
            admitted.will.clone(),
            admitted.will_props.clone(),
            None,
        ))
        .map_err(LinkError::Encode)?;
    let (mut rd, mut wr) = tokio::io::split(shared.broker.connect(version));
    wr.write_all(&connect_bytes)
        .await
        .map_err(LinkError::Write)?;
    let pending = tokio::time::timeout(CONNACK_TIMEOUT, read_connack(&mut rd))
        .await
        .map_err(|_| LinkError::NoConnAck("no answer".into()))??;
    Ok(BrokerLink { rd, wr, pending })
}

/// Read until the broker's first packet, which must be a CONNACK, is
/// whole; returns everything read, the CONNACK still at its front.
async fn read_connack(rd: &mut ReadHalf<DuplexStream>) -> Result<BytesMut, LinkError> {
    let mut buf = BytesMut::with_capacity(64);
    match read_packet_at(rd, &mut buf, 0).await? {
        (PacketKind::ConnAck, _) => Ok(buf),
        (kind, _) => Err(LinkError::NoConnAck(format!(
            "its first packet was {kind:?}"
        ))),
    }
}

/// Read from the broker into `buf` until the packet that starts at `from`
/// is whole; its kind and length. The broker's answers to the edge
/// (CONNACK, SUBACK) are a few bytes, well under the bound.
pub(super) async fn read_packet_at(
    rd: &mut ReadHalf<DuplexStream>,
    buf: &mut BytesMut,
    from: usize,
) -> Result<(PacketKind, usize), LinkError> {
    const MAX_ANSWER: usize = 4096;
    loop {
        let mut probe = BytesMut::from(&buf[from..]);
        match take_frame(&mut probe, MAX_ANSWER) {
            Ok(Some(frame)) => return Ok((frame.kind, buf.len() - from - probe.len())),
            Ok(None) => {}
            Err(e) => return Err(LinkError::NoConnAck(e.to_string())),
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Err(LinkError::NoConnAck("it closed the connection".into())),
            Ok(_) => {}
            Err(e) => return Err(LinkError::NoConnAck(e.to_string())),
        }
    }
}
