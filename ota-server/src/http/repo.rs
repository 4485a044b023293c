//! Serving the TUF repository: metadata from memory, targets from disk with
//! `Content-Length`, strong `ETag`s, `If-None-Match`, and single-range
//! `Range`/`If-Range` requests so interrupted downloads resume (read by
//! [`ByteRange`], as the gateway's image server reads them).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use wardgate_protocol::ByteRange;

use super::{ApiError, AppState, ErrorBody};
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
#[utoipa::path(get, path = "/metadata/{file}", tag = "tuf",
    params(
        ("file" = String, Path, description = "`timestamp.json`, or a versioned file (`3.snapshot.json`, `2.root.json`, `5.acme.json`)", example = "timestamp.json"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer")),
    responses(
        (status = 200, description = "The signed TUF metadata, byte for byte",
            content_type = "application/json", body = Object,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Unchanged since the `If-None-Match` ETag"),
        (status = 400, description = "The file name is not readable", body = ErrorBody),
        (status = 404, description = "Not in the current repository", body = ErrorBody)))]
pub async fn metadata(
    State(state): State<Arc<AppState>>,
    file: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let file = match file {
        Ok(Path(file)) => file,
        Err(e) => return ApiError::from(e).into_response(),
    };
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

/// `GET /targets/{*path}`: both consistent-snapshot spellings.
#[utoipa::path(get, path = "/targets/{path}", tag = "tuf",
    params(
        ("path" = String, Path, description = "`<manufacturer>/<sha256>.<file>` or `<sha256>.<manufacturer>/<file>` (may hold `/`)"),
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=N-M`"),
        ("If-Range" = Option<String>, Header, description = "The image's ETag: the range applies only if it still matches"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` from an earlier answer")),
    responses(
        (status = 200, description = "The whole image", content_type = "application/octet-stream", body = String,
            headers(("ETag" = String), ("Accept-Ranges" = String))),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = String,
            headers(("Content-Range" = String), ("ETag" = String))),
        (status = 304, description = "Unchanged since the `If-None-Match` ETag"),
        (status = 400, description = "The path is not readable", body = ErrorBody),
        (status = 404, description = "Not in the current repository", body = ErrorBody),
        (status = 416, description = "The range lies outside the image", body = ErrorBody)))]
pub async fn target(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let path = match path {
        Ok(Path(path)) => path,
        Err(e) => return ApiError::from(e).into_response(),
    };
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
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let range = ByteRange::requested(
        header_str(header::RANGE),
        header_str(header::IF_RANGE),
        &etag,
        len,
    );
    if let Some(v) = range
        .content_range(len)
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    let (status, start, count) = match range {
        ByteRange::Full => (StatusCode::OK, 0, len),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
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
