//! The message parsers of `wardgate-protocol`, on payload bytes as they
//! come off the network, and the byte-range parsers on header values. The
//! first input byte picks the parser:
//!
//! | selector % 9 | parser |
//! | --- | --- |
//! | 0..=4 | `Telemetry`, `Status`, `OtaOffer`, `OtaReport`, `Command` `from_json` |
//! | 5 | `DeviceMessage::parse` for every topic kind |
//! | 6 | `ByteRange::requested` (`Range` and `If-Range`, as both image servers read them) |
//! | 7 | `ContentRange::parse` (as both downloaders read it) |
//! | 8 | `DeviceTopic::parse` (a PUBLISH topic) |
//!
//! Besides never panicking, each parse is held to what it promises: an
//! accepted message is within its ranges, a range lies inside the
//! representation, a parsed header or topic writes back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wardgate_protocol::{
    topic, ByteRange, Command, ContentRange, DeviceMessage, DeviceTopic, OtaOffer, OtaReport,
    Status, Telemetry, TopicKind,
};

/// The strong entity tag the image servers send.
const ETAG: &str = "\"sha256-5e884898da28047151d0e56f8dc62927\"";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 9 {
        0 => {
            if let Ok(t) = Telemetry::from_json(rest) {
                assert!(!t.readings.is_empty());
                for r in &t.readings {
                    let (lo, hi) = r.kind.range();
                    assert!(r.value >= lo && r.value <= hi, "{r:?} out of range");
                }
            }
        }
        1 => {
            if let Ok(s) = Status::from_json(rest) {
                assert!(s.battery_pct.is_none_or(|b| b <= 100));
            }
        }
        2 => {
            let _ = OtaOffer::from_json(rest);
        }
        3 => {
            let _ = OtaReport::from_json(rest);
        }
        4 => {
            let _ = Command::from_json(rest);
        }
        5 => {
            for kind in [
                TopicKind::Telemetry,
                TopicKind::Status,
                TopicKind::OtaReport,
                TopicKind::OtaOffer,
                TopicKind::Cmd,
            ] {
                if let Ok(m) = DeviceMessage::parse(kind, rest) {
                    assert!(!matches!(kind, TopicKind::OtaOffer | TopicKind::Cmd));
                    let _ = m.seq();
                }
            }
        }
        6 => byte_range(rest),
        7 => {
            let Ok(value) = std::str::from_utf8(rest) else {
                return;
            };
            if let Some(c) = ContentRange::parse(value) {
                assert!(c.start <= c.end);
                assert!(c.complete_length.is_none_or(|n| c.end < n));
                assert_eq!(ContentRange::parse(&c.to_string()), Some(c));
            }
        }
        _ => {
            let Ok(t) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(parsed) = DeviceTopic::parse(t) {
                assert_eq!(topic(&parsed.device, parsed.kind), t);
            }
        }
    }
});

/// Eight bytes of representation length (big-endian), then the `Range`
/// value and, after a newline, the `If-Range` value if any.
fn byte_range(rest: &[u8]) {
    let Some((len, headers)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let len = u64::from_be_bytes(*len);
    let Ok(headers) = std::str::from_utf8(headers) else {
        return;
    };
    let (range, if_range) = match headers.split_once('\n') {
        Some((r, i)) => (Some(r), Some(i)),
        None => (Some(headers), None),
    };
    let asked = ByteRange::requested(range, if_range, ETAG, len);
    if if_range.is_some_and(|i| i.trim() != ETAG) {
        assert_eq!(asked, ByteRange::Full, "If-Range of another validator");
    }
    match asked {
        ByteRange::Full => assert_eq!(asked.content_range(len), None),
        ByteRange::Part { start, end } => {
            assert!(start <= end && end < len, "{start}-{end} outside {len}");
            let header = asked
                .content_range(len)
                .expect("a part has a Content-Range");
            let back = ContentRange::parse(&header).expect("our Content-Range parses");
            assert_eq!(
                (back.start, back.end, back.complete_length),
                (start, end, Some(len))
            );
            assert!(back.continues(start, len));
        }
        ByteRange::Unsatisfiable => {
            assert_eq!(asked.content_range(len), Some(format!("bytes */{len}")));
        }
    }
}
