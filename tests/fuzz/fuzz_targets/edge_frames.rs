//! The device edge's framing and MQTT decoding, exactly as a session reads
//! the decrypted TLS stream: bytes arrive in pieces (the first input byte
//! picks the piece size, 0 for all at once), `take_frame` splits them into
//! packets bounded by the edge's default `max_packet_bytes`, the first
//! packet must be a CONNECT whose protocol level picks `rumqttd`'s v4 or v5
//! codec, and every later packet is decoded with that codec if the
//! session's inspection decodes its kind. The session ends at the first
//! refusal, so does this target.

#![no_main]

use bytes::BytesMut;
use gateway::config::EdgeConfig;
use gateway::edge::frame::{connect_protocol_level, take_frame, PacketKind};
use gateway::edge::fuzzing::Codec;
use libfuzzer_sys::fuzz_target;
use rumqttd::protocol::Packet;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = if piece == 0 {
        stream.len().max(1)
    } else {
        usize::from(piece)
    };
    let max = EdgeConfig::default().max_packet_bytes;
    let mut buf = BytesMut::new();
    let mut codec: Option<Codec> = None;
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            let frame = match take_frame(&mut buf, max) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return,
            };
            // The framing bound holds for every frame handed on.
            assert!(frame.bytes.len() <= max, "frame over max_packet_bytes");
            let _ = (
                frame.publish_qos(),
                frame.publish_pkid(),
                frame.publish_retain(),
            );
            match codec {
                None => {
                    if frame.kind != PacketKind::Connect {
                        return;
                    }
                    let Some(c) = Codec::for_level(connect_protocol_level(&frame)) else {
                        return;
                    };
                    match c.decode(&frame, max) {
                        Ok(Packet::Connect(..)) => codec = Some(c),
                        _ => return,
                    }
                }
                // As `edge/inspect.rs`: these kinds are decoded, a
                // DISCONNECT ends the session, anything else is refused.
                Some(c) => match frame.kind {
                    PacketKind::Publish
                    | PacketKind::Subscribe
                    | PacketKind::Unsubscribe
                    | PacketKind::PubAck
                    | PacketKind::PubRec
                    | PacketKind::PubRel
                    | PacketKind::PubComp
                    | PacketKind::PingReq => {
                        if c.decode(&frame, max).is_err() {
                            return;
                        }
                    }
                    _ => return,
                },
            }
        }
        // What stays buffered is part of one packet within the limit, so
        // a peer cannot make the session hold more.
        assert!(buf.len() < max, "{} bytes buffered", buf.len());
    }
});
