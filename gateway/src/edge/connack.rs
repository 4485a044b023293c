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
    use rumqttd::protocol::{ConnAck, ConnectReturnCode as C, Packet};

    /// Each refusal is exactly what the codec itself writes for a CONNACK
    /// with the code it is named for.
    #[test]
    fn refusals_are_the_codecs_own_connacks() {
        let cases = [
            (Codec::V4, not_authorized(Codec::V4), C::NotAuthorized),
            (Codec::V5, not_authorized(Codec::V5), C::NotAuthorized),
            (
                Codec::V4,
                server_unavailable(Codec::V4),
                C::ServiceUnavailable,
            ),
            (
                Codec::V5,
                server_unavailable(Codec::V5),
                C::ServerUnavailable,
            ),
            (Codec::V4, UNSUPPORTED_PROTOCOL, C::RefusedProtocolVersion),
        ];
        for (codec, bytes, code) in cases {
            let ack = ConnAck {
                session_present: false,
                code,
            };
            let encoded = codec.encode(Packet::ConnAck(ack, None)).unwrap();
            assert_eq!(&encoded[..], bytes, "{codec:?} {code:?}");
        }
    }
}
