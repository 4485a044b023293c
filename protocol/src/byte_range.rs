//! HTTP byte ranges (RFC 9110 section 14), the one implementation for every
//! image transfer in Wardgate: devices resume downloads from the gateway's
//! image server with `Range`/`If-Range`, and the gateway resumes downloads
//! from the OTA server the same way. Both servers read the request with
//! [`ByteRange::requested`] and write `Content-Range` with
//! [`ByteRange::content_range`]; both clients check the answer with
//! [`ContentRange::parse`]. No I/O, no HTTP types: header values as `&str`.
//!
//! A server honours one range only. Several ranges, another unit or a value
//! it cannot read mean the whole representation (`200`), which RFC 9110
//! 14.2 allows. Numbers that overflow `u64` count as unreadable.

use std::fmt;

/// What a `Range` request asks of a representation of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The whole representation (`200`).
    Full,
    /// `start..=end`, always inside the representation (`206`).
    Part {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// Nothing of it (`416` with `Content-Range: bytes */<len>`).
    Unsatisfiable,
}

impl ByteRange {
    /// Interpret a `Range` header value against `len` bytes (RFC 9110
    /// 14.1.2, 14.2). A single `bytes=` range is honoured and clamped to
    /// the representation: `first-` to its end, `first-last` with `last`
    /// past the end to its end, `-n` to its last `n` bytes (all of it if it
    /// is shorter). A range that starts at or after the end, `-0`, or any
    /// range of an empty representation is [`ByteRange::Unsatisfiable`].
    /// No header, several ranges, another unit, a reversed range
    /// (`last < first`) and bad syntax are [`ByteRange::Full`].
    #[must_use]
    pub fn parse(value: Option<&str>, len: u64) -> Self {
        let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
            return Self::Full;
        };
        if spec.contains(',') {
            return Self::Full;
        }
        let Some((first, last)) = spec.trim().split_once('-') else {
            return Self::Full;
        };
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            return match last.parse::<u64>() {
                Ok(0) => Self::Unsatisfiable,
                Ok(_) if len == 0 => Self::Unsatisfiable,
                Ok(n) => Self::Part {
                    start: len.saturating_sub(n),
                    end: len - 1,
                },
                Err(_) => Self::Full,
            };
        }
        let Ok(start) = first.parse::<u64>() else {
            return Self::Full;
        };
        let end = if last.is_empty() {
            None
        } else {
            match last.parse::<u64>() {
                Ok(e) if e >= start => Some(e),
                _ => return Self::Full,
            }
        };
        if start >= len {
            return Self::Unsatisfiable;
        }
        Self::Part {
            start,
            end: end.map_or(len - 1, |e| e.min(len - 1)),
        }
    }

    /// [`ByteRange::parse`] under an `If-Range` precondition (RFC 9110
    /// 13.1.5): the range is honoured only without `If-Range` or when it
    /// names `etag` (the quoted strong entity tag of the representation).
    /// Another validator, or a date (these servers send no
    /// `Last-Modified`), means the client's partial copy is of something
    /// else: [`ByteRange::Full`].
    #[must_use]
    pub fn requested(range: Option<&str>, if_range: Option<&str>, etag: &str, len: u64) -> Self {
        if if_range.is_none_or(|v| v.trim() == etag) {
            Self::parse(range, len)
        } else {
            Self::Full
        }
    }

    /// The `Content-Range` value of the response to this range of `len`
    /// bytes: `bytes <start>-<end>/<len>` for a part, `bytes */<len>` when
    /// unsatisfiable, none for the whole representation.
    #[must_use]
    pub fn content_range(&self, len: u64) -> Option<String> {
        match *self {
            Self::Full => None,
            Self::Part { start, end } => Some(
                ContentRange {
                    start,
                    end,
                    complete_length: Some(len),
                }
                .to_string(),
            ),
            Self::Unsatisfiable => Some(format!("bytes */{len}")),
        }
    }
}

/// A `Content-Range: bytes <start>-<end>/<length>` response header
/// (RFC 9110 14.4), as a client resuming a download reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First byte of the part.
    pub start: u64,
    /// Last byte of the part, inclusive.
    pub end: u64,
    /// Length of the whole representation; `None` for `*` (unknown).
    pub complete_length: Option<u64>,
}

impl ContentRange {
    /// Read a `Content-Range` value of a `206` response. Whitespace around
    /// the value is tolerated, none inside it (`bytes`, one space, the
    /// numbers, as RFC 9110 writes it). A value the
    /// RFC calls invalid (`end < start`, or `end` not below the complete
    /// length) is `None`: its content must not be recombined with a stored
    /// copy. So is `bytes */<len>` (the unsatisfied form of a `416`).
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.trim().strip_prefix("bytes ")?;
        let (range, complete_length) = rest.split_once('/')?;
        let (start, end) = range.split_once('-')?;
        let (start, end) = (start.parse::<u64>().ok()?, end.parse::<u64>().ok()?);
        let complete_length = match complete_length {
            "*" => None,
            n => Some(n.parse::<u64>().ok()?),
        };
        if end < start || complete_length.is_some_and(|n| end >= n) {
            return None;
        }
        Some(Self {
            start,
            end,
            complete_length,
        })
    }
}

impl ContentRange {
    /// Whether this part continues a download that holds the first `offset`
    /// bytes of an image of `length` bytes: it starts at `offset` and, if
    /// the server says how long the whole is, that is `length`.
    #[must_use]
    pub fn continues(&self, offset: u64, length: u64) -> bool {
        self.start == offset && self.complete_length.is_none_or(|n| n == length)
    }
}

impl fmt::Display for ContentRange {
    /// The header value, `bytes <start>-<end>/<length or *>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes {}-{}/", self.start, self.end)?;
        match self.complete_length {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u64 = u64::MAX;

    #[test]
    fn honoured_ranges_are_clamped_to_the_representation() {
        for (header, len, start, end) in [
            ("bytes=4-", 10, 4, 9),
            ("bytes=2-", 10, 2, 9),
            ("bytes=2-3", 10, 2, 3),
            ("bytes=2-4", 10, 2, 4),
            ("bytes=0-0", 10, 0, 0),
            ("bytes=9-9", 10, 9, 9),
            ("bytes=-4", 10, 6, 9),
            ("bytes=-3", 10, 7, 9),
            ("bytes=-40", 10, 0, 9),
            ("bytes=5-500", 10, 5, 9),
            ("bytes=8-100", 10, 8, 9),
            ("bytes=0-", 1, 0, 0),
            (" bytes= 3 - 5 ", 10, 3, 5),
            ("bytes=-18446744073709551615", 10, 0, 9),
            ("bytes=0-18446744073709551615", 10, 0, 9),
            ("bytes=18446744073709551614-", MAX, MAX - 1, MAX - 1),
        ] {
            assert_eq!(
                ByteRange::parse(Some(header), len),
                ByteRange::Part { start, end },
                "{header} of {len} bytes"
            );
        }
    }

    #[test]
    fn ranges_outside_the_representation_are_unsatisfiable() {
        for (header, len) in [
            ("bytes=10-", 10),
            ("bytes=10-20", 10),
            ("bytes=999999999-", 10),
            ("bytes=18446744073709551615-", 10),
            ("bytes=-0", 10),
            ("bytes=-00", 10),
            ("bytes=-0", 0),
            ("bytes=0-", 0),
            ("bytes=-5", 0),
        ] {
            assert_eq!(
                ByteRange::parse(Some(header), len),
                ByteRange::Unsatisfiable,
                "{header} of {len} bytes"
            );
        }
    }

    #[test]
    fn other_requests_get_the_whole_representation() {
        assert_eq!(ByteRange::parse(None, 10), ByteRange::Full);
        let many = format!("bytes={}", vec!["0-0"; 10_000].join(","));
        for whole in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=0-1,4-5",
            "bytes=0-1,3-4",
            "bytes=0-1, 4-5",
            "bytes=,",
            many.as_str(),
            "items=0-1",
            "bytes 0-1",
            "bytes=3-2",
            "bytes=20-10",
            "bytes=x-",
            "bytes=1-x",
            "bytes=-x",
            "bytes=--1",
            "bytes=1--2",
            "bytes=0x10-",
            "bytes=1.5-",
            "bytes=18446744073709551616-",
            "bytes=0-18446744073709551616",
            "bytes=-18446744073709551616",
            "bytes=99999999999999999999999999-",
            "bytes=\u{0}-\u{0}",
        ] {
            assert_eq!(
                ByteRange::parse(Some(whole), 10),
                ByteRange::Full,
                "{whole}"
            );
        }
    }

    #[test]
    fn if_range_must_name_the_representation() {
        let etag = "\"abc\"";
        for (if_range, expected) in [
            (None, ByteRange::Part { start: 4, end: 9 }),
            (Some("\"abc\""), ByteRange::Part { start: 4, end: 9 }),
            (Some(" \"abc\" "), ByteRange::Part { start: 4, end: 9 }),
            (Some("\"other\""), ByteRange::Full),
            (Some("W/\"abc\""), ByteRange::Full),
            (Some("Wed, 02 Dec 2026 05:00:00 GMT"), ByteRange::Full),
        ] {
            assert_eq!(
                ByteRange::requested(Some("bytes=4-"), if_range, etag, 10),
                expected,
                "{if_range:?}"
            );
        }
        assert_eq!(
            ByteRange::requested(Some("bytes=10-"), Some(etag), etag, 10),
            ByteRange::Unsatisfiable
        );
        assert_eq!(
            ByteRange::requested(Some("bytes=10-"), Some("\"old\""), etag, 10),
            ByteRange::Full
        );
        assert_eq!(
            ByteRange::requested(None, Some(etag), etag, 10),
            ByteRange::Full
        );
    }

    #[test]
    fn content_range_headers_of_responses() {
        assert_eq!(ByteRange::Full.content_range(10), None);
        assert_eq!(
            ByteRange::Part { start: 2, end: 9 }.content_range(10),
            Some("bytes 2-9/10".into())
        );
        assert_eq!(
            ByteRange::Unsatisfiable.content_range(10),
            Some("bytes */10".into())
        );
    }

    #[test]
    fn content_range_is_read_strictly() {
        let part = |start, end, complete_length| {
            Some(ContentRange {
                start,
                end,
                complete_length,
            })
        };
        for (header, expected) in [
            ("bytes 10-99/100", part(10, 99, Some(100))),
            ("bytes 100-199/200", part(100, 199, Some(200))),
            ("bytes 0-0/*", part(0, 0, None)),
            ("bytes 5-9/*", part(5, 9, None)),
            ("bytes 0-0/1", part(0, 0, Some(1))),
            (" bytes 1-2/3\t", part(1, 2, Some(3))),
            (
                "bytes 0-18446744073709551614/18446744073709551615",
                part(0, MAX - 1, Some(MAX)),
            ),
            ("bytes */100", None),
            ("items 1-2/3", None),
            ("bytes=5-9/10", None),
            ("bytes x-9/10", None),
            ("bytes 5-x/10", None),
            ("bytes 5-9/x", None),
            ("bytes 5-9", None),
            ("bytes 5/10", None),
            ("bytes -9/10", None),
            ("bytes 5-/10", None),
            ("bytes 9-5/10", None),
            ("bytes 5-10/10", None),
            ("bytes 0-0/0", None),
            ("bytes  5-9/10", None),
            ("bytes 5 - 9 / 10", None),
            ("bytes 5-9/ 10", None),
            ("bytes 0-18446744073709551616/*", None),
            ("bytes 0-1/18446744073709551616", None),
            ("", None),
            ("bytes ", None),
        ] {
            assert_eq!(ContentRange::parse(header), expected, "{header}");
        }
    }

    #[test]
    fn a_resumed_part_must_start_where_the_copy_ends() {
        let part = |start, complete_length| ContentRange {
            start,
            end: 99,
            complete_length,
        };
        assert!(part(10, Some(100)).continues(10, 100));
        assert!(part(10, None).continues(10, 100));
        assert!(!part(0, Some(100)).continues(10, 100));
        assert!(!part(10, Some(200)).continues(10, 100));
    }

    proptest! {
        #[test]
        fn honoured_ranges_stay_inside(v in "\\PC{0,40}", len in 0u64..10_000) {
            if let ByteRange::Part { start, end } = ByteRange::parse(Some(&v), len) {
                prop_assert!(start <= end && end < len);
            }
        }

        #[test]
        fn numeric_ranges_stay_inside(
            first in proptest::option::of(any::<u64>()),
            last in proptest::option::of(any::<u64>()),
            len in any::<u64>(),
        ) {
            let fmt = |n: Option<u64>| n.map_or(String::new(), |n| n.to_string());
            let header = format!("bytes={}-{}", fmt(first), fmt(last));
            match ByteRange::parse(Some(&header), len) {
                ByteRange::Part { start, end } => prop_assert!(start <= end && end < len),
                ByteRange::Unsatisfiable => prop_assert!(
                    len == 0 || (first.is_none() && last == Some(0)) || first.is_some_and(|f| f >= len)
                ),
                ByteRange::Full => prop_assert!(
                    (first.is_none() && last.is_none())
                        || matches!((first, last), (Some(f), Some(l)) if l < f)
                ),
            }
        }

        #[test]
        fn content_range_round_trips(
            start in any::<u64>(),
            span in any::<u64>(),
            extra in proptest::option::of(1u64..1000),
        ) {
            let end = start.saturating_add(span);
            let complete_length = extra.and_then(|e| end.checked_add(e));
            let header = ContentRange { start, end, complete_length };
            prop_assert_eq!(ContentRange::parse(&header.to_string()), Some(header));
        }

        #[test]
        fn content_range_never_panics(v in "\\PC{0,60}") {
            if let Some(r) = ContentRange::parse(&v) {
                prop_assert!(r.start <= r.end);
                prop_assert!(r.complete_length.is_none_or(|n| r.end < n));
            }
        }
    }
}
