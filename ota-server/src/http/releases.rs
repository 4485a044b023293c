//! Manufacturer release upload, and the admin views of releases and audit.
//!
//! `POST /api/v1/releases/<manufacturer>/<file>` with header
//! `X-Wardgate-Metadata-Length: N` and a body made of the N bytes of the
//! signed delegated-targets metadata followed by the image:
//!
//! ```sh
//! cat 3.acme.json pump-2.0.0.bin | curl --cacert ca.pem \
//!   -H "Authorization: Bearer $TOKEN" \
//!   -H "X-Wardgate-Metadata-Length: $(stat -c%s 3.acme.json)" \
//!   --data-binary @- https://ota.example/api/v1/releases/acme/pump-2.0.0.bin
//! ```
//!
//! The image is streamed to a temporary file (bounded by
//! `limits.max_upload_bytes`, hashed on the way, fsynced) and handed to
//! [`crate::repo::Repository::publish_release`], which applies
//! [`crate::repo::release`] and publishes atomically.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Admin, ApiError, AppState, ErrorBody, Manufacturer};
use crate::repo::release::{Candidate, StagedImage};
use crate::repo::RepoError;
use tuf_repo::{ManufacturerName, TargetPath};

/// Header carrying the metadata length.
pub const METADATA_LENGTH_HEADER: &str = "x-wardgate-metadata-length";

fn release_error(e: RepoError) -> ApiError {
    match e {
        RepoError::Release(r) => {
            use crate::repo::ReleaseError as R;
            let status = match r {
                R::Malformed(_) => StatusCode::BAD_REQUEST,
                R::Scope(_) | R::NotDelegated(_) | R::BadSignature(_) => StatusCode::FORBIDDEN,
                R::NotNewer(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiError::new(status, r.code(), r.to_string())
        }
        other => ApiError::internal(&other),
    }
}

/// The metadata length an upload announces in `X-Wardgate-Metadata-Length`:
/// 1 to `max_meta` bytes. Public (hidden) for the fuzz targets in
/// `tests/fuzz/`, which feed it untrusted header values.
///
/// # Errors
/// `missing_metadata_length` if the header is absent or not a decimal
/// number, `metadata_too_large` outside 1 to `max_meta`.
#[doc(hidden)]
pub fn metadata_length(headers: &HeaderMap, max_meta: usize) -> Result<usize, ApiError> {
    let meta_len: usize = headers
        .get(METADATA_LENGTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_metadata_length",
                "send X-Wardgate-Metadata-Length: <bytes of the signed role metadata at the start of the body>",
            )
        })?;
    if meta_len == 0 || meta_len > max_meta {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "metadata_too_large",
            format!("metadata must be 1 to {max_meta} bytes (limits.max_metadata_bytes)"),
        ));
    }
    Ok(meta_len)
}

/// One body chunk of an upload: its first bytes complete `meta` up to
/// `meta_len`; the rest, returned, is image. Chunks arrive however the
/// client and the network cut them, so the split may fall anywhere.
/// Public (hidden) for the fuzz targets in `tests/fuzz/`.
#[doc(hidden)]
pub fn split_metadata<'a>(meta: &mut Vec<u8>, meta_len: usize, chunk: &'a [u8]) -> &'a [u8] {
    let take = meta_len.saturating_sub(meta.len()).min(chunk.len());
    meta.extend_from_slice(&chunk[..take]);
    &chunk[take..]
}

/// After the last chunk: refuse a body that ended inside the announced
/// metadata. Public (hidden) for the fuzz targets in `tests/fuzz/`.
///
/// # Errors
/// `upload_incomplete` naming how many of the announced bytes came.
#[doc(hidden)]
pub fn metadata_complete(meta: &[u8], meta_len: usize) -> Result<(), ApiError> {
    if meta.len() < meta_len {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "upload_incomplete",
            format!(
                "the body ended after {} of the {meta_len} metadata bytes announced in X-Wardgate-Metadata-Length",
                meta.len()
            ),
        ));
    }
    Ok(())
}

/// Streams the body: metadata first, then the image into `tmp`.
async fn receive(
    state: &AppState,
    meta_len: usize,
    body: Body,
    tmp: &std::path::Path,
) -> Result<(Vec<u8>, u64, String), ApiError> {
    let max = state.limits.max_upload_bytes;
    let mut meta = Vec::with_capacity(meta_len.min(64 * 1024));
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| ApiError::internal(&format!("creating {}: {e}", tmp.display())))?;
    let mut hasher = Sha256::new();
    let mut written: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "upload_incomplete",
                format!("the upload was interrupted ({e}); nothing was published, upload again"),
            )
        })?;
        let data = split_metadata(&mut meta, meta_len, &chunk);
        if data.is_empty() {
            continue;
        }
        written += data.len() as u64;
        if written > max {
            return Err(too_large(max));
        }
        hasher.update(data);
        file.write_all(data)
            .await
            .map_err(|e| ApiError::internal(&format!("writing upload: {e}")))?;
    }
    metadata_complete(&meta, meta_len)?;
    file.flush()
        .await
        .map_err(|e| ApiError::internal(&format!("writing upload: {e}")))?;
    file.sync_all()
        .await
        .map_err(|e| ApiError::internal(&format!("syncing upload: {e}")))?;
    Ok((meta, written, hex::encode(hasher.finalize())))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "upload_too_large",
        format!("the image is larger than limits.max_upload_bytes ({max} bytes); ask the operator to raise it"),
    )
}

/// `POST /api/v1/releases/{*target}`.
#[utoipa::path(post, path = "/api/v1/releases/{target}", tag = "releases", security(("manufacturer_token" = [])),
    params(
        ("target" = String, Path, description = "`<manufacturer>/<file>`, the target the signed metadata names", example = "acme/pump-2.0.0.bin"),
        ("X-Wardgate-Metadata-Length" = u64, Header, description = "Bytes of signed delegated-targets metadata at the start of the body", minimum = 1)),
    request_body(content = String, content_type = "application/octet-stream",
        description = "The manufacturer's signed role metadata (`<manufacturer>.json` from `tuf-repo release`), then the image"),
    responses(
        (status = 201, description = "Published (audited `release.upload`)", body = crate::repo::release::Published),
        (status = 400, description = "`invalid_target_name`, `missing_metadata_length`, `upload_incomplete`, malformed metadata", body = ErrorBody),
        (status = 403, description = "Not a manufacturer token; outside the manufacturer's delegation; bad signature", body = ErrorBody),
        (status = 408, description = "`upload_timeout`: longer than `limits.upload_timeout`", body = ErrorBody),
        (status = 409, description = "Not newer than the published version", body = ErrorBody),
        (status = 413, description = "`metadata_too_large` or `upload_too_large`", body = ErrorBody),
        (status = 422, description = "The metadata does not match the image", body = ErrorBody)))]
///
/// The work runs in its own task so that a client that disconnects
/// mid-upload still gets its staged file removed and its refusal audited
/// (hyper drops the handler future when the connection goes away).
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Manufacturer(manufacturer): Manufacturer,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let task = tokio::spawn(upload_task(state, manufacturer, target, headers, body));
    match task.await {
        Ok(r) => r,
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

async fn upload_task(
    state: Arc<AppState>,
    manufacturer: ManufacturerName,
    target: String,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let actor = format!("manufacturer:{manufacturer}");
    let result = upload_inner(&state, &manufacturer, &target, &headers, body).await;
    match result {
        Ok(p) => {
            state.metrics.releases_published.inc();
            tracing::info!(manufacturer = %manufacturer, target = %p.target, role_version = p.role_version, snapshot_version = p.snapshot_version, "release published");
            state
                .audit(
                    actor,
                    "release.upload",
                    Ok(format!(
                        "published {} sha256 {} ({} bytes)",
                        p.target, p.sha256, p.length
                    )),
                )
                .await;
            (StatusCode::CREATED, Json(p)).into_response()
        }
        Err(e) => {
            state.metrics.refused(e.code);
            tracing::warn!(manufacturer = %manufacturer, target = %target, code = e.code, message = %e.message, "release refused");
            state.audit(actor, "release.upload", Err(&e)).await;
            e.into_response()
        }
    }
}

async fn upload_inner(
    state: &Arc<AppState>,
    manufacturer: &ManufacturerName,
    target: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<crate::repo::release::Published, ApiError> {
    let target = TargetPath::new(target).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_target_name",
            e.to_string(),
        )
    })?;
    let meta_len = metadata_length(headers, state.limits.max_metadata_bytes as usize)?;
    let declared: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if let Some(total) = declared {
        if total.saturating_sub(meta_len as u64) > state.limits.max_upload_bytes {
            return Err(too_large(state.limits.max_upload_bytes));
        }
    }
    // tuf-repo matches images by file name, so the staged file carries it.
    let staging = state
        .repo
        .tmp_dir()
        .join(format!("upload-{}", uuid::Uuid::new_v4()));
    tokio::fs::create_dir_all(&staging)
        .await
        .map_err(|e| ApiError::internal(&format!("creating {}: {e}", staging.display())))?;
    let tmp = staging.join(target.file());
    let received = tokio::time::timeout(
        state.limits.upload_timeout,
        receive(state, meta_len, body, &tmp),
    )
    .await;
    let received = match received {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "upload_timeout",
            "the upload took longer than limits.upload_timeout; retry on a faster link or ask the operator to raise it",
        )),
    };
    let (role_bytes, length, sha256) = match received {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(e);
        }
    };
    let candidate = Candidate {
        manufacturer: manufacturer.clone(),
        target,
        role_bytes,
        image: StagedImage {
            path: tmp,
            length,
            sha256,
        },
    };
    let published = state
        .repo
        .publish_release(candidate)
        .await
        .map_err(release_error)?;
    let p = published.clone();
    let m = manufacturer.to_string();
    state
        .db
        .call(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO releases (target, manufacturer, length, sha256, role_version, snapshot_version, published_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    p.target.to_string(),
                    m,
                    i64::try_from(p.length).unwrap_or(i64::MAX),
                    p.sha256,
                    i64::try_from(p.role_version).unwrap_or(i64::MAX),
                    i64::try_from(p.snapshot_version).unwrap_or(i64::MAX),
                    crate::db::now_rfc3339()
                ],
            )?;
            Ok(())
        })
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(published)
}

/// A release row.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReleaseRow {
    /// Target.
    pub target: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Length.
    pub length: i64,
    /// SHA-256.
    pub sha256: String,
    /// Role version.
    pub role_version: i64,
    /// Snapshot version at publication.
    pub snapshot_version: i64,
    /// When.
    pub published_at: String,
}

/// `GET /api/v1/releases` (admin).
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every published release", body = Vec<ReleaseRow>),
        (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<ReleaseRow>>, ApiError> {
    let rows = state
        .db
        .call(|c| {
            let mut st = c.prepare_cached(
                "SELECT target, manufacturer, length, sha256, role_version, snapshot_version, published_at FROM releases ORDER BY published_at, target",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok(ReleaseRow {
                        target: r.get(0)?,
                        manufacturer: r.get(1)?,
                        length: r.get(2)?,
                        sha256: r.get(3)?,
                        role_version: r.get(4)?,
                        snapshot_version: r.get(5)?,
                        published_at: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(rows))
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Rows to return (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// `GET /api/v1/audit` (admin): newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("admin_token" = [])), params(AuditQuery),
    responses(
        (status = 200, description = "The newest audit rows", body = Vec<crate::db::AuditRow>),
        (status = 400, description = "`invalid_query`: `limit` is not a number", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<crate::db::AuditRow>>, ApiError> {
    let Query(q) = q?;
    let rows = state
        .db
        .recent_audit(q.limit.unwrap_or(100).min(1000))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(rows))
}
