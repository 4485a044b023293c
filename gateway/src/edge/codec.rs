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

use super::frame::Frame;
use super::violation::Violation;

/// MQTT codec of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5 (protocol level 5).
    V5,
}

impl Codec {
    /// The codec of a CONNECT's protocol level, if the edge speaks it.
    pub(crate) fn for_level(level: Option<u8>) -> Option<Self> {
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
    pub(crate) fn decode(self, frame: &Frame, max: usize) -> Result<Packet, Violation> {
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
