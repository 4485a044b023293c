//! The MQTT codec of a session, chosen once from the CONNECT's protocol
//! level: `rumqttd`'s v4 (MQTT 3.1.1) or v5 codec.
//!
//! Framing ([`crate::edge::frame`]) has already bounded the packet; decoding
//! here turns a codec error, and even a panic inside the codec, into a
//! [`Violation::Protocol`], so no byte sequence from a device can take the
//! session task down.

use bytes::BytesMut;
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::v5::V5;
use rumqttd::protocol::{Packet, Protocol};

use super::frame::{Frame, PacketKind};
use super::violation::Violation;

/// MQTT codec of the session.
///
/// Public only so that the fuzz targets in `tests/fuzz/` decode exactly as
/// the session does (see [`crate::edge::fuzzing`]); the module is private.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5 (protocol level 5).
    V5,
}

impl Codec {
    /// The codec of a CONNECT's protocol level, if the edge speaks it.
    pub fn for_level(level: Option<u8>) -> Option<Self> {
        match level {
            Some(4) => Some(Self::V4),
            Some(5) => Some(Self::V5),
            _ => None,
        }
    }

    /// The protocol version, for logs.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Self::V4 => "3.1.1",
            Self::V5 => "5",
        }
    }

    /// Decode one whole frame.
    pub fn decode(self, frame: &Frame, max: usize) -> Result<Packet, Violation> {
        if !self.reads(frame.kind) {
            return Err(Violation::Protocol(format!(
                "{:?} is not a packet a device sends in MQTT {}",
                frame.kind,
                self.version()
            )));
        }
        let mut buf = BytesMut::from(&frame.bytes[..]);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match self {
            Self::V4 => V4.read_mut(&mut buf, max),
            Self::V5 => V5.read_mut(&mut buf, max),
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

    /// Whether `rumqttd`'s codec reads `kind` at all. Its v5 reader ends
    /// in `unreachable!()` for CONNACK and UNSUBACK (found by the
    /// `edge_frames` fuzz target); the panic would be caught in
    /// [`Codec::decode`], but not without a backtrace on stderr per packet,
    /// and not at all in a build with `panic = "abort"`. So those are
    /// refused as an error before the codec sees them.
    fn reads(self, kind: PacketKind) -> bool {
        !(self == Self::V5 && matches!(kind, PacketKind::ConnAck | PacketKind::UnsubAck))
    }

    /// Encode one packet.
    pub(crate) fn encode(self, packet: Packet) -> Result<BytesMut, rumqttd::protocol::Error> {
        let mut out = BytesMut::new();
        match self {
            Self::V4 => V4.write(packet, &mut out),
            Self::V5 => V5.write(packet, &mut out),
        }?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::frame::{connect_protocol_level, take_frame};
    use proptest::prelude::*;

    /// A CONNACK from a device, which `rumqttd`'s v5 reader does not
    /// handle (`unreachable!()`): refused as an error, not a panic.
    #[test]
    fn fuzz_regression_v5_connack_unreachable() {
        for input in [
            &b"\x23\x01\xa2"[..],
            &b"\x20\x03\x00\x00\x00"[..],
            &b"\xb0\x03\x00\x07\x00"[..],
        ] {
            let frame = take_frame(&mut BytesMut::from(input), 1024)
                .unwrap()
                .unwrap();
            match Codec::V5.decode(&frame, 1024) {
                Err(Violation::Protocol(m)) => {
                    assert!(m.contains("not a packet a device sends"), "{m}");
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
        // MQTT 3.1.1's reader handles them: its own error or a packet.
        let frame = take_frame(&mut BytesMut::from(&b"\x20\x02\x00\x00"[..]), 1024)
            .unwrap()
            .unwrap();
        assert!(matches!(
            Codec::V4.decode(&frame, 1024),
            Ok(Packet::ConnAck(..))
        ));
    }

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
            prop_assert_eq!(frame.publish_pkid(), Some(7));
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
