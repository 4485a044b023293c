//! The session's own connection to the embedded broker.
//!
//! Each admitted device gets one connection to the loopback `rumqttd`
//! listener of its protocol version. The device's CONNECT is passed on with
//! the per-boot broker credential in place of anything the device sent, so
//! nothing but the edge can log in to the broker.

use rumqttd::protocol::{Login, Packet};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::admission::Admitted;
use super::codec::Codec;
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
}

/// Both halves of an open broker connection, CONNECT already sent.
pub(crate) struct BrokerLink {
    /// Broker to device.
    pub(crate) rd: OwnedReadHalf,
    /// Device to broker.
    pub(crate) wr: OwnedWriteHalf,
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
    let (rd, mut wr) = broker.into_split();
    wr.write_all(&connect_bytes)
        .await
        .map_err(LinkError::Write)?;
    Ok(BrokerLink { rd, wr })
}
