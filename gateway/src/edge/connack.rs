//! The CONNACK packets the edge itself sends: refusals before a session is
//! relayed to the broker. An accepted CONNECT is answered by the broker,
//! whose CONNACK the relay passes through.
//!
//! Each refusal is written in the device's own protocol version where the
//! edge knows it: MQTT 3.1.1 return codes (section 3.2.2.3) and MQTT 5
//! reason codes (section 3.2.2.2), the latter with an empty property list.

use super::codec::Codec;

/// CONNACK refusing an unsupported protocol level. Sent before any codec
/// is chosen, so in the 3.1.1 form the MQTT specifications ask for
/// (return code 1, "unacceptable protocol version").
pub(crate) const UNSUPPORTED_PROTOCOL: &[u8] = &[0x20, 0x02, 0x00, 0x01];

/// CONNACK refusing with "not authorized": identity, enrolment, pin or
/// last-will refusals, and a registry that cannot be read.
pub(crate) fn not_authorized(codec: Codec) -> &'static [u8] {
    match codec {
        Codec::V4 => &[0x20, 0x02, 0x00, 0x05],
        Codec::V5 => &[0x20, 0x03, 0x00, 0x87, 0x00],
    }
}

/// CONNACK refusing with "server unavailable": the embedded broker cannot
/// be reached.
pub(crate) fn server_unavailable(codec: Codec) -> &'static [u8] {
    match codec {
        Codec::V4 => &[0x20, 0x02, 0x00, 0x03],
        Codec::V5 => &[0x20, 0x03, 0x00, 0x88, 0x00],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::frame::{take_frame, PacketKind};
    use bytes::BytesMut;
    use rumqttd::protocol::Packet;

    /// Every refusal is a well-formed CONNACK in its codec with the code
    /// it is named for.
    #[test]
    fn refusals_decode_with_their_codes() {
        use rumqttd::protocol::ConnectReturnCode as C;
        let cases = [
            (Codec::V4, not_authorized(Codec::V4), C::NotAuthorized),
            (Codec::V5, not_authorized(Codec::V5), C::NotAuthorized),
            (Codec::V4, server_unavailable(Codec::V4), C::ServiceUnavailable),
            (Codec::V5, server_unavailable(Codec::V5), C::ServerUnavailable),
            (Codec::V4, UNSUPPORTED_PROTOCOL, C::RefusedProtocolVersion),
        ];
        for (codec, bytes, expected) in cases {
            let frame = take_frame(&mut BytesMut::from(bytes), 16)
                .unwrap()
                .unwrap();
            assert_eq!(frame.kind, PacketKind::ConnAck);
            match codec.decode(&frame, 16) {
                Ok(Packet::ConnAck(ack, _)) => assert_eq!(ack.code, expected, "{codec:?}"),
                other => panic!("{codec:?}: {other:?}"),
            }
        }
    }
}
