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
