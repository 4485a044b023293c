//! Admission: whether a device that completed the TLS handshake may open an
//! MQTT session.
//!
//! The first packet must be a CONNECT within `edge.connect_timeout`, in MQTT
//! 3.1.1 or 5 (the session's codec is chosen here). [`check_connect`]
//! then decides, in this order: the MQTT client id equals the device id of
//! the verified certificate; the registry knows the device and it is not
//! revoked; the certificate is the one pinned for it, if one is; the CONNECT
//! carries no last will (a will would reach the broker without the payload
//! and replay checks). A refused device gets a refusing CONNACK, an audit
//! row and a metric; only admitted sessions go on to the relay.

use std::net::SocketAddr;

use bytes::BytesMut;
use rumqttd::protocol::{Connect, ConnectProperties, LastWill, LastWillProperties, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wardgate_protocol::DeviceId;

use super::codec::Codec;
use super::connack;
use super::frame::{connect_protocol_level, take_frame, Frame, PacketKind};
use super::report::{refuse_device, violation_before_connect};
use super::shared::Shared;
use super::violation::Violation;
use crate::edge::tls::PeerIdentity;
use crate::registry::{DeviceRecord, DeviceState};

/// Why a CONNECT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefusal {
    /// MQTT client id differs from the certificate's device id.
    #[error("client id {client_id:?} differs from certificate device id {cert_id}")]
    ClientIdMismatch {
        /// What the CONNECT said.
        client_id: String,
        /// What the certificate says.
        cert_id: DeviceId,
    },
    /// Not in the registry.
    #[error("device {0} is not enrolled")]
    NotEnrolled(DeviceId),
    /// Revoked in the registry.
    #[error("device {0} is revoked")]
    Revoked(DeviceId),
    /// The registry pins another certificate.
    #[error("certificate fingerprint {presented} is not the one enrolled for {device}")]
    CertificateNotPinned {
        /// Device.
        device: DeviceId,
        /// Presented fingerprint.
        presented: String,
    },
    /// CONNECT carried a last will (not part of the v1 contract: a will would
    /// bypass payload and replay checks).
    #[error("last will messages are not allowed")]
    LastWill,
}

impl ConnectRefusal {
    /// Short label for metrics and audit detail.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ClientIdMismatch { .. } => "client_id_mismatch",
            Self::NotEnrolled(_) => "not_enrolled",
            Self::Revoked(_) => "revoked",
            Self::CertificateNotPinned { .. } => "certificate_not_pinned",
            Self::LastWill => "last_will",
        }
    }
}

/// Decide a CONNECT: the device's state if allowed.
///
/// # Errors
/// The [`ConnectRefusal`].
pub fn check_connect(
    identity: &PeerIdentity,
    client_id: &str,
    record: Option<&DeviceRecord>,
    has_will: bool,
) -> Result<DeviceState, ConnectRefusal> {
    if client_id != identity.device_id.as_str() {
        return Err(ConnectRefusal::ClientIdMismatch {
            client_id: client_id.chars().take(80).collect(),
            cert_id: identity.device_id.clone(),
        });
    }
    let record = record.ok_or_else(|| ConnectRefusal::NotEnrolled(identity.device_id.clone()))?;
    if record.state == DeviceState::Revoked {
        return Err(ConnectRefusal::Revoked(identity.device_id.clone()));
    }
    if let Some(pinned) = &record.cert_fingerprint {
        if pinned != &identity.fingerprint {
            return Err(ConnectRefusal::CertificateNotPinned {
                device: identity.device_id.clone(),
                presented: identity.fingerprint.clone(),
            });
        }
    }
    if has_will {
        return Err(ConnectRefusal::LastWill);
    }
    Ok(record.state)
}

/// A CONNECT that passed admission: what the session needs from it.
pub(crate) struct Admitted {
    /// The session's codec.
    pub(crate) codec: Codec,
    /// The CONNECT, to be passed on to the broker.
    pub(crate) connect: Connect,
    /// Its MQTT 5 properties.
    pub(crate) props: Option<ConnectProperties>,
    /// Its last will (always `None`: a will is refused).
    pub(crate) will: Option<LastWill>,
    /// The will's MQTT 5 properties.
    pub(crate) will_props: Option<LastWillProperties>,
    /// The device's registry state (active or quarantined).
    pub(crate) state: DeviceState,
}

/// Read and decide the CONNECT of `identity`'s connection. Every refusal is
/// answered, audited and counted here; `None` means the session is over.
pub(crate) async fn admit<R, W>(
    shared: &Shared,
    identity: &PeerIdentity,
    peer: SocketAddr,
    (rd, wr): (&mut R, &mut W),
    buf: &mut BytesMut,
) -> Option<Admitted>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let device = &identity.device_id;
    let frame = first_frame(shared, device, peer, rd, buf).await?;
    let (codec, connect, props, will, will_props) =
        decode_connect(shared, device, peer, wr, &frame).await?;
    let record = match shared.ctx.registry.get_async(device.clone()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "registry lookup failed");
            let _ = wr.write_all(connack::not_authorized(codec)).await;
            return None;
        }
    };
    match check_connect(
        identity,
        &connect.client_id,
        record.as_ref(),
        will.is_some(),
    ) {
        Ok(state) => Some(Admitted {
            codec,
            connect,
            props,
            will,
            will_props,
            state,
        }),
        Err(refusal) => {
            let _ = wr.write_all(connack::not_authorized(codec)).await;
            let _ = wr.shutdown().await;
            let (reason, detail) = (refusal.reason(), refusal.to_string());
            refuse_device(shared, device, peer, reason, &detail).await;
            None
        }
    }
}

/// The parts of a CONNECT, in the codec its protocol level names.
type DecodedConnect = (
    Codec,
    Connect,
    Option<ConnectProperties>,
    Option<LastWill>,
    Option<LastWillProperties>,
);

/// Choose the codec from the CONNECT's protocol level and decode it;
/// refusals are answered and recorded here.
async fn decode_connect<W: AsyncWrite + Unpin>(
    shared: &Shared,
    device: &DeviceId,
    peer: SocketAddr,
    wr: &mut W,
    frame: &Frame,
) -> Option<DecodedConnect> {
    let Some(codec) = Codec::for_level(connect_protocol_level(frame)) else {
        let _ = wr.write_all(connack::UNSUPPORTED_PROTOCOL).await;
        let detail = format!(
            "protocol level {:?}; MQTT 3.1.1 (4) or 5 required",
            connect_protocol_level(frame)
        );
        let reason = "unsupported_protocol";
        refuse_device(shared, device, peer, reason, &detail).await;
        return None;
    };
    let violation = match codec.decode(frame, shared.ctx.config.edge.max_packet_bytes) {
        Ok(Packet::Connect(connect, props, will, will_props, _login)) => {
            return Some((codec, connect, props, will, will_props));
        }
        Ok(_) => Violation::Protocol("CONNECT did not decode as CONNECT".into()),
        Err(v) => v,
    };
    violation_before_connect(shared, device, peer, &violation).await;
    None
}

/// The first frame, which must be a CONNECT within `edge.connect_timeout`.
async fn first_frame<R: AsyncRead + Unpin>(
    shared: &Shared,
    device: &DeviceId,
    peer: SocketAddr,
    rd: &mut R,
    buf: &mut BytesMut,
) -> Option<Frame> {
    let cfg = &shared.ctx.config.edge;
    let first = tokio::time::timeout(
        cfg.connect_timeout,
        read_frame(rd, buf, cfg.max_packet_bytes),
    )
    .await;
    let (reason, detail) = match first {
        Ok(Ok(Some(f))) if f.kind == PacketKind::Connect => return Some(f),
        Ok(Ok(Some(f))) => {
            let v = Violation::Protocol(format!("first packet is {:?}, not CONNECT", f.kind));
            violation_before_connect(shared, device, peer, &v).await;
            return None;
        }
        Ok(Err(v)) => {
            violation_before_connect(shared, device, peer, &v).await;
            return None;
        }
        Ok(Ok(None)) => ("closed_before_connect", "closed before CONNECT"),
        Err(_) => ("connect_timeout", "no CONNECT within edge.connect_timeout"),
    };
    refuse_device(shared, device, peer, reason, detail).await;
    None
}

/// Read until one whole frame is buffered (or EOF / error).
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Frame>, Violation> {
    loop {
        if let Some(f) = take_frame(buf, max).map_err(|e| Violation::Protocol(e.to_string()))? {
            return Ok(Some(f));
        }
        buf.reserve(1024);
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
