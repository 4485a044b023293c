//! Serving the TUF repository: metadata from memory, targets from disk with
//! `Content-Length`, strong `ETag`s, `If-None-Match`, and single-range
//! `Range`/`If-Range` requests so interrupted downloads resume.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{ApiError, AppState};
use crate::repo::TargetRequest;

fn not_found(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} is not in the current repository"),
    )
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// `GET /metadata/{file}`.
pub async fn metadata(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = state.repo.state();
    let Some(m) = s.metadata(&file) else {
        return not_found(&format!("metadata/{file}")).into_response();
    };
    let cache = if file == "timestamp.json" {
        "no-cache"
    } else {
        // Versioned files never change once written.
        "public, max-age=31536000, immutable"
    };
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&m.etag) {
        h.insert(header::ETAG, v);
    }
    if etag_matches(&headers, &m.etag) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    (StatusCode::OK, h, m.bytes.clone()).into_response()
}

/// A parsed `Range` header against a resource of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// Serve everything.
    Full,
    /// Serve `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// Nothing satisfiable.
    Unsatisfiable,
}

/// Parses a single `bytes=` range (RFC 9110 14.1.2). Multiple ranges and
/// unknown units fall back to the full body, which the RFC allows.
#[must_use]
pub fn parse_range(value: Option<&str>, len: u64) -> RangeSpec {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last `b` bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Full;
        };
        if n == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Partial {
            start: len.saturating_sub(n),
            end: len - 1,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Full;
    };
    let end = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len.saturating_sub(1)),
            _ => return RangeSpec::Full,
        }
    };
    if start >= len {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Partial { start, end }
}

/// `GET /targets/{*path}`: both consistent-snapshot spellings.
pub async fn target(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(req) = TargetRequest::parse(&path) else {
        return not_found(&format!("targets/{path}")).into_response();
    };
    let s = state.repo.state();
    let Some(t) = s.resolve_target(&req) else {
        return not_found(&format!("targets/{path}")).into_response();
    };
    let etag = format!("\"{}\"", t.sha256);
    let len = t.length;
    let file_path = t.file.clone();
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if etag_matches(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let range = if if_range_ok {
        parse_range(
            headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
            len,
        )
    } else {
        RangeSpec::Full
    };
    let (status, start, count) = match range {
        RangeSpec::Full => (StatusCode::OK, 0, len),
        RangeSpec::Partial { start, end } => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeSpec::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            let e = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the image has {len} bytes; ask for a range inside it"),
            );
            return (h, e).into_response();
        }
    };
    let mut file = match tokio::fs::File::open(&file_path).await {
        Ok(f) => f,
        Err(e) => {
            return ApiError::internal(&format!("opening {}: {e}", file_path.display()))
                .into_response()
        }
    };
    if start > 0 {
        if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
            return ApiError::internal(&e).into_response();
        }
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    let metrics = Arc::clone(&state.metrics);
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(count), 64 * 1024).map(
        move |chunk| {
            if let Ok(c) = &chunk {
                metrics.target_bytes_sent.inc_by(c.len() as u64);
            }
            chunk
        },
    );
    (status, h, Body::from_stream(stream)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeSpec::Full);
        for (header, start, end) in [
            ("bytes=2-", 2, 9),
            ("bytes=2-4", 2, 4),
            ("bytes=-3", 7, 9),
            ("bytes=8-100", 8, 9),
        ] {
            assert_eq!(
                parse_range(Some(header), 10),
                RangeSpec::Partial { start, end },
                "{header}"
            );
        }
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeSpec::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeSpec::Full);
    }

    proptest! {
        #[test]
        fn range_stays_in_bounds(v in "\\PC{0,40}", len in 0u64..1000) {
            if let RangeSpec::Partial { start, end } = parse_range(Some(&v), len) {
                prop_assert!(start <= end && end < len);
            }
        }
    }
}
