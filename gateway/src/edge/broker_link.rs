//! The session's own connection to the embedded broker.
//!
//! Each admitted device gets one connection to the loopback `rumqttd`
//! listener of its protocol version. The device's CONNECT is passed on with
//! the per-boot broker credential in place of anything the device sent, so
//! nothing but the edge can log in to the broker.
//!
//! [`open`] returns only once the broker has answered the CONNACK. `rumqttd`
//! 0.20 keeps a will handler per client id from the moment it reads a
//! CONNECT; if the connection drops before the broker has written its
//! CONNACK, the handler is left behind, and the next CONNECT of the same
//! client id panics inside the broker while it holds the listener's shared
//! lock, which poisons it, and from then on every connection to that
//! listener fails (bytebeamio/rumqtt#1062). A device that sends garbage
//! right after its CONNECT would do exactly that, so its next packet is not
//! read until the broker has answered.

use std::time::Duration;

use bytes::BytesMut;
use rumqttd::protocol::{Login, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::admission::Admitted;
use super::codec::Codec;
use super::frame::{take_frame, PacketKind};
use super::shared::Shared;

/// Why the broker connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The CONNECT could not be encoded again (a device fault).
    #[error("CONNECT cannot be re-encoded: {0}")]
    Encode(#[source] rumqttd::protocol::Error),
    /// The broker's listener did not accept the connection.
    #[error("cannot reach the embedded broker: {0}")]
    Connect(#[source] std::io::Error),
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
    pub(crate) rd: OwnedReadHalf,
    /// Device to broker.
    pub(crate) wr: OwnedWriteHalf,
    /// What the broker sent so far, its CONNACK first: for the device.
    pub(crate) pending: BytesMut,
}

/// Connect to the broker for `admitted` and send its CONNECT with the
/// broker credential.
pub(crate) async fn open(shared: &Shared, admitted: &Admitted) -> Result<BrokerLink, LinkError> {
    let broker_addr = match admitted.codec {
        Codec::V4 => shared.broker.v4_addr,
        Codec::V5 => shared.broker.v5_addr,
    };
    let login = Login {
        username: shared.broker.credentials.username.clone(),
        password: shared.broker.credentials.password.clone(),
    };
    let connect_bytes = admitted
        .codec
        .encode(Packet::Connect(
            admitted.connect.clone(),
            admitted.props.clone(),
            admitted.will.clone(),
            admitted.will_props.clone(),
            Some(login),
        ))
        .map_err(LinkError::Encode)?;
    let broker = TcpStream::connect(broker_addr)
        .await
        .map_err(LinkError::Connect)?;
    let _ = broker.set_nodelay(true);
    let (mut rd, mut wr) = broker.into_split();
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
async fn read_connack(rd: &mut OwnedReadHalf) -> Result<BytesMut, LinkError> {
    /// A CONNACK is a few bytes; MQTT 5 properties keep it well under this.
    const MAX_CONNACK: usize = 4096;
    let mut buf = BytesMut::with_capacity(64);
    loop {
        let mut probe = buf.clone();
        match take_frame(&mut probe, MAX_CONNACK) {
            Ok(Some(frame)) if frame.kind == PacketKind::ConnAck => return Ok(buf),
            Ok(Some(frame)) => {
                return Err(LinkError::NoConnAck(format!(
                    "its first packet was {:?}",
                    frame.kind
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(LinkError::NoConnAck(e.to_string())),
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return Err(LinkError::NoConnAck("it closed the connection".into())),
            Ok(_) => {}
            Err(e) => return Err(LinkError::NoConnAck(e.to_string())),
        }
    }
}
