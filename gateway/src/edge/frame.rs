//! MQTT framing: split a byte stream into whole packets before any decoding.
//!
//! The fixed header (type, flags, remaining length) is read here, and a
//! packet larger than the limit is refused *before* its body is buffered, so
//! a peer cannot make the edge hold more than one maximum packet. The packet
//! body is then decoded by `rumqttd`'s v4/v5 codecs.

use bytes::{Bytes, BytesMut};

/// MQTT control packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// CONNECT (1)
    Connect,
    /// CONNACK (2)
    ConnAck,
    /// PUBLISH (3)
    Publish,
    /// PUBACK (4)
    PubAck,
    /// PUBREC (5)
    PubRec,
    /// PUBREL (6)
    PubRel,
    /// PUBCOMP (7)
    PubComp,
    /// SUBSCRIBE (8)
    Subscribe,
    /// SUBACK (9)
    SubAck,
    /// UNSUBSCRIBE (10)
    Unsubscribe,
    /// UNSUBACK (11)
    UnsubAck,
    /// PINGREQ (12)
    PingReq,
    /// PINGRESP (13)
    PingResp,
    /// DISCONNECT (14)
    Disconnect,
    /// AUTH (15, MQTT 5 only)
    Auth,
}

impl PacketKind {
    fn from_nibble(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }
}

/// Why a byte stream is not MQTT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Packet type 0 (reserved).
    #[error("reserved packet type 0")]
    ReservedType,
    /// Remaining length longer than four bytes.
    #[error("malformed remaining length")]
    MalformedLength,
    /// Packet over the limit.
    #[error("packet of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// Limit.
        max: usize,
    },
}

/// One whole MQTT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its type.
    pub kind: PacketKind,
    /// The low nibble of the first byte (DUP/QoS/RETAIN for PUBLISH).
    pub flags: u8,
    /// The whole packet, fixed header included.
    pub bytes: Bytes,
}

impl Frame {
    /// QoS of a PUBLISH (bits 1-2 of the flags).
    #[must_use]
    pub fn publish_qos(&self) -> u8 {
        (self.flags >> 1) & 0b11
    }

    /// Packet identifier of a QoS 1 or 2 PUBLISH (after the topic in the
    /// variable header); `None` for QoS 0 or a frame too short to hold one.
    #[must_use]
    pub fn publish_pkid(&self) -> Option<u16> {
        if self.kind != PacketKind::Publish || self.publish_qos() == 0 {
            return None;
        }
        let b = &self.bytes;
        let mut i = 1;
        while b.get(i)? & 0x80 != 0 {
            i += 1;
        }
        i += 1;
        let topic_len = usize::from(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
        let at = i + 2 + topic_len;
        Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
    }

    /// The same PUBLISH at QoS 0: DUP and QoS cleared, the packet id
    /// removed, the remaining length written again. `None` if this is not a
    /// QoS 1 PUBLISH (or too short to be one).
    ///
    /// The edge acknowledges a stored message itself and hands the broker
    /// this copy: the broker then has no PUBACK to send, so every PUBACK a
    /// device sees comes from the edge, in order, right after the commit.
    #[must_use]
    pub fn publish_at_most_once(&self) -> Option<Bytes> {
        if self.kind != PacketKind::Publish || self.publish_qos() != 1 {
            return None;
        }
        let b = &self.bytes;
        let mut header = 1;
        while b.get(header)? & 0x80 != 0 {
            header += 1;
        }
        header += 1;
        let topic_len = usize::from(u16::from_be_bytes([*b.get(header)?, *b.get(header + 1)?]));
        let pkid_at = header + 2 + topic_len;
        b.get(pkid_at + 1)?;
        let remaining = b.len() - header - 2;
        let length = encode_remaining_length(remaining);
        let mut out = BytesMut::with_capacity(1 + length.len() + remaining);
        out.extend_from_slice(&[(b[0] & 0xf0) | (self.flags & 1)]);
        out.extend_from_slice(&length);
        out.extend_from_slice(&b[header..pkid_at]);
        out.extend_from_slice(&b[pkid_at + 2..]);
        Some(out.freeze())
    }

    /// RETAIN flag of a PUBLISH.
    #[must_use]
    pub fn publish_retain(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// Take one whole packet off the front of `buf`, if one is there.
///
/// `Ok(None)` means more bytes are needed; the caller must then make sure
/// `buf` can grow to at most `max` bytes.
///
/// # Errors
/// [`FrameError`] if the stream is not MQTT or the packet exceeds `max`.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = PacketKind::from_nibble(first >> 4).ok_or(FrameError::ReservedType)?;
    let mut remaining: usize = 0;
    let mut shift = 0;
    let mut header_len = 1;
    loop {
        let Some(&b) = buf.get(header_len) else {
            return Ok(None);
        };
        header_len += 1;
        remaining += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if header_len > 4 {
            return Err(FrameError::MalformedLength);
        }
    }
    let size = header_len + remaining;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let bytes = buf.split_to(size).freeze();
    Ok(Some(Frame {
        kind,
        flags: first & 0x0f,
        bytes,
    }))
}

/// The protocol level byte of a CONNECT frame (4 = 3.1.1, 5 = 5.0), if the
/// variable header names the `MQTT` protocol.
#[must_use]
pub fn connect_protocol_level(frame: &Frame) -> Option<u8> {
    if frame.kind != PacketKind::Connect {
        return None;
    }
    let b = &frame.bytes;
    // Skip the fixed header.
    let mut i = 1;
    while i < b.len() && b[i] & 0x80 != 0 {
        i += 1;
    }
    i += 1;
    let name = b.get(i..i + 6)?;
    if name != [0, 4, b'M', b'Q', b'T', b'T'] {
        return None;
    }
    b.get(i + 6).copied()
}

/// Encode a remaining length (for tests and for building packets).
#[must_use]
pub fn encode_remaining_length(mut len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_packets_and_waits_for_more() {
        let mut buf = BytesMut::from(&b"\xC0\x00\x30\x03a"[..]);
        let f = take_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(f.kind, PacketKind::PingReq);
        assert_eq!(take_frame(&mut buf, 100).unwrap(), None);
        buf.extend_from_slice(b"bc");
        let f = take_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(f.kind, PacketKind::Publish);
        assert_eq!(f.bytes.len(), 5);
        assert!(buf.is_empty());
    }

    /// A QoS 1 PUBLISH of `payload` on `topic` with packet id 7 and DUP
    /// set, in `codec`, laid out by hand (MQTT 3.1.1 section 3.3, 5.0
    /// section 3.3) so the test does not trust the encoder it checks; the
    /// v5 form carries a content type property.
    fn qos1_publish(
        codec: crate::edge::codec::Codec,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Frame {
        let mut variable = Vec::new();
        variable.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        variable.extend_from_slice(topic.as_bytes());
        variable.extend_from_slice(&7u16.to_be_bytes());
        if codec == crate::edge::codec::Codec::V5 {
            let content_type = b"application/json";
            let mut props = vec![0x03];
            props.extend_from_slice(&(content_type.len() as u16).to_be_bytes());
            props.extend_from_slice(content_type);
            variable.extend(encode_remaining_length(props.len()));
            variable.extend(props);
        }
        variable.extend_from_slice(payload);
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&[0x30 | 0b1000 | 0b0010 | u8::from(retain)]);
        bytes.extend(encode_remaining_length(variable.len()));
        bytes.extend(variable);
        take_frame(&mut bytes, usize::MAX).unwrap().unwrap()
    }

    /// The QoS 0 copy handed to the broker decodes in both protocol
    /// versions to the same topic, payload, retain flag and properties,
    /// also where dropping the packet id shortens the remaining length's
    /// encoding (129 bytes -> 127).
    #[test]
    fn a_qos_1_publish_becomes_the_same_message_at_qos_0() {
        use crate::edge::codec::Codec;
        use rumqttd::protocol::Packet;
        for codec in [Codec::V4, Codec::V5] {
            for (len, retain) in [(5, false), (200, true), (0, false)] {
                let payload = vec![b'x'; len];
                let frame =
                    qos1_publish(codec, "wardgate/v1/devices/p-1/telemetry", &payload, retain);
                let at_most_once = frame.publish_at_most_once().unwrap();
                let mut buf = BytesMut::from(&at_most_once[..]);
                let f = take_frame(&mut buf, usize::MAX).unwrap().unwrap();
                assert!(buf.is_empty());
                assert_eq!(
                    (f.publish_qos(), f.publish_retain(), f.flags & 0b1000),
                    (0, retain, 0)
                );
                assert_eq!(f.publish_pkid(), None);
                let Packet::Publish(p, props) = codec.decode(&f, usize::MAX).unwrap() else {
                    panic!("not a PUBLISH");
                };
                assert_eq!(
                    (&p.topic[..], &p.payload[..]),
                    (&b"wardgate/v1/devices/p-1/telemetry"[..], &payload[..])
                );
                assert_eq!(
                    props.and_then(|p| p.content_type),
                    (codec == Codec::V5).then(|| "application/json".to_owned())
                );
            }
        }
        // The remaining length loses a byte: 129 -> 127.
        let topic = "t".repeat(129 - 2 - 2 - 5);
        let frame = qos1_publish(Codec::V4, &topic, b"12345", false);
        assert_eq!(frame.bytes.len(), 1 + 2 + 129);
        let at_most_once = frame.publish_at_most_once().unwrap();
        assert_eq!(at_most_once.len(), 1 + 1 + 127);
        assert_eq!(at_most_once[1], 127);
    }

    #[test]
    fn only_a_qos_1_publish_has_an_at_most_once_copy() {
        let ping = take_frame(&mut BytesMut::from(&b"\xC0\x00"[..]), 10)
            .unwrap()
            .unwrap();
        assert_eq!(ping.publish_at_most_once(), None);
        let qos0 = take_frame(&mut BytesMut::from(&b"\x30\x03\x00\x01a"[..]), 10)
            .unwrap()
            .unwrap();
        assert_eq!(qos0.publish_at_most_once(), None);
        // Too short to hold its packet id.
        let cut = take_frame(&mut BytesMut::from(&b"\x32\x03\x00\x01a"[..]), 10)
            .unwrap()
            .unwrap();
        assert_eq!(cut.publish_at_most_once(), None);
    }

    #[test]
    fn refuses_garbage_and_oversize_before_buffering() {
        assert_eq!(
            take_frame(&mut BytesMut::from(&[0x00u8][..]), 10),
            Err(FrameError::ReservedType)
        );
        let mut huge = BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0x7f][..]);
        assert!(matches!(
            take_frame(&mut huge, 1000),
            Err(FrameError::TooLarge { .. })
        ));
        let mut bad = BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert_eq!(
            take_frame(&mut bad, usize::MAX),
            Err(FrameError::MalformedLength)
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_never_exceeds_max(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 2usize..200) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(f)) = take_frame(&mut buf, max) {
                prop_assert!(f.bytes.len() <= max);
                let _ = connect_protocol_level(&f);
            }
        }

        #[test]
        fn round_trips_any_length(len in 0usize..20_000, kind in 1u8..=15) {
            let mut packet = vec![kind << 4];
            packet.extend(encode_remaining_length(len));
            packet.extend(std::iter::repeat_n(7u8, len));
            let mut buf = BytesMut::from(&packet[..]);
            let f = take_frame(&mut buf, usize::MAX).unwrap().unwrap();
            prop_assert_eq!(f.bytes.len(), packet.len());
            prop_assert!(buf.is_empty());
        }
    }
}
