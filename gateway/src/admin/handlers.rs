//! Handlers of the admin API. Each runs after the guard has authorised its
//! [`crate::access::Action`], so a handler only does the work and its audit:
//! registry changes are audited by the registry in the same transaction,
//! token changes here, with the caller's token id as the actor.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wardgate_protocol::DeviceId;

use super::error::ApiError;
use super::guard::Caller;
use super::state::AdminState;
use crate::access::issuance;
use crate::access::name::{TokenId, TokenName};
use crate::access::role::Role;
use crate::access::token::record::{NewToken, TokenKind, TokenRecord};
use crate::ota::api::RetryError;
use crate::registry::{DeviceRecord, DeviceState, NewDevice, RegistryError};
use crate::uplink::UplinkMonitor;

type ApiResult<T> = Result<T, ApiError>;

/// Run blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(&e)))
}

fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::NotFound(_) => ApiError::not_found(e.to_string()),
        RegistryError::AlreadyEnrolled(_) | RegistryError::Revoked(_) => {
            ApiError::conflict(e.to_string())
        }
        RegistryError::Invalid { .. } => ApiError::bad_request(e.to_string()),
        other => ApiError::internal(&other),
    }
}

/// The request body, or a JSON error (413 when over `admin.max_body_bytes`).
fn read_body(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body exceeds admin.max_body_bytes; send a smaller body",
            )
        } else {
            ApiError::bad_request(format!("could not read the request body: {rejection}"))
        }
    })
}

/// Parse an optional JSON body; an empty body is `T::default()`.
fn json_body<T: for<'de> Deserialize<'de> + Default>(
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<T> {
    let bytes = read_body(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn device_id(raw: &str) -> ApiResult<DeviceId> {
    DeviceId::parse(raw)
        .map_err(|e| ApiError::bad_request(format!("`{raw}` is not a device id: {e}")))
}

/// `GET /healthz`: liveness, no authentication.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Unknown route.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such admin API route; see docs/gateway.md for the route list")
}

/// `GET /metrics`: the shared Prometheus registry (OpenMetrics text).
pub(crate) async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.shared_metrics.encode(),
    )
        .into_response()
}

#[derive(Serialize)]
struct DeviceCounts {
    active: usize,
    quarantined: usize,
    revoked: usize,
}

#[derive(Serialize)]
struct TokenCounts {
    usable: usize,
    break_glass_usable: usize,
}

/// `GET /api/v1/status`.
pub(crate) async fn status(State(state): State<Arc<AdminState>>) -> ApiResult<Json<Value>> {
    let st = state.clone();
    let (devices, tokens) = blocking(move || {
        let devices = st.registry.list().map_err(registry_error)?;
        let tokens = st.tokens.list()?;
        Ok((devices, tokens))
    })
    .await?;
    let count = |s: DeviceState| devices.iter().filter(|d| d.state == s).count();
    let now = state.tokens.clock().now();
    let usable: Vec<&TokenRecord> = tokens
        .iter()
        .filter(|t| t.revoked_at.is_none() && !t.is_expired(now))
        .collect();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "devices": DeviceCounts {
            active: count(DeviceState::Active),
            quarantined: count(DeviceState::Quarantined),
            revoked: count(DeviceState::Revoked),
        },
        "tokens": TokenCounts {
            usable: usable.len(),
            break_glass_usable: usable.iter().filter(|t| t.kind == TokenKind::BreakGlass).count(),
        },
        // Connected, outbox depth and oldest message age; null when the
        // gateway runs without an uplink.
        "uplink": state.uplink.as_ref().map(UplinkMonitor::status),
    })))
}

/// `GET /api/v1/devices`.
pub(crate) async fn list_devices(
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<Vec<DeviceRecord>>> {
    blocking(move || state.registry.list().map_err(registry_error))
        .await
        .map(Json)
}

/// `GET /api/v1/devices/{id}`.
pub(crate) async fn get_device(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceRecord>> {
    let id = device_id(&id)?;
    state
        .registry
        .get_async(id.clone())
        .await
        .map_err(registry_error)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("device {id} is not enrolled")))
}

/// `POST /api/v1/devices`: enrol (body: the registry's `NewDevice`).
pub(crate) async fn enroll_device(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<DeviceRecord>)> {
    let bytes = read_body(body)?;
    let device: NewDevice = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid enrolment: {e}; send {{\"id\", \"model\", \"hardware_id\", \"manufacturer\", \"firmware_version\", \"cert_fingerprint\"?}}"
        ))
    })?;
    let actor = caller.actor();
    let record = blocking(move || {
        state
            .registry
            .enroll(&device, &actor)
            .map_err(registry_error)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// Optional body of state changes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    reason: Option<String>,
}

async fn change_state(
    state: Arc<AdminState>,
    caller: &Caller,
    id: &str,
    to: DeviceState,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let id = device_id(id)?;
    let body: ChangeBody = json_body(body)?;
    let reason = body.reason.unwrap_or_default();
    if reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "`reason` must be at most 200 printable characters",
        ));
    }
    let reason = if reason.is_empty() {
        format!("admin API ({})", caller.token.name.as_str())
    } else {
        reason
    };
    let changed = state
        .registry
        .set_state_async(id.clone(), to, caller.actor(), reason)
        .await
        .map_err(registry_error)?
        .is_some();
    let device = state
        .registry
        .get_async(id.clone())
        .await
        .map_err(registry_error)?
        .ok_or_else(|| ApiError::not_found(format!("device {id} is not enrolled")))?;
    Ok(Json(json!({"changed": changed, "device": device})))
}

/// `POST /api/v1/devices/{id}/quarantine`, `.../reactivate` and
/// `.../revoke` (final; the edge disconnects the device): one handler each,
/// differing only in the state they set.
pub(crate) fn set_state(to: DeviceState) -> MethodRouter<Arc<AdminState>> {
    post(
        move |State(state): State<Arc<AdminState>>,
              Extension(caller): Extension<Caller>,
              Path(id): Path<String>,
              body: Result<Bytes, BytesRejection>| async move {
            change_state(state, &caller, &id, to, body).await
        },
    )
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    limit: Option<u32>,
}

/// `GET /api/v1/audit?limit=N`: the newest rows, newest first.
pub(crate) async fn recent_audit(
    State(state): State<Arc<AdminState>>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    let max = u32::try_from(state.config.audit_page_max).unwrap_or(u32::MAX);
    let limit = q.limit.unwrap_or(100.min(max));
    if limit == 0 || limit > max {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {max} (admin.audit_page_max)"
        )));
    }
    let rows = blocking(move || {
        state
            .audit
            .recent(limit)
            .map_err(|e| ApiError::internal(&e))
    })
    .await?;
    Ok(Json(json!({"rows": rows})))
}

/// `GET /api/v1/audit/verify`: walk the hash chain.
pub(crate) async fn verify_audit(State(state): State<Arc<AdminState>>) -> ApiResult<Json<Value>> {
    let report = blocking(move || state.audit.verify().map_err(|e| ApiError::internal(&e))).await?;
    Ok(Json(json!({
        "intact": report.is_intact(),
        "rows": report.rows,
        "problems": report.problems,
    })))
}

/// `GET /api/v1/tokens`.
pub(crate) async fn list_tokens(
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<Vec<TokenRecord>>> {
    blocking(move || Ok(state.tokens.list()?)).await.map(Json)
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenBody {
    name: String,
    role: Option<Role>,
    /// e.g. `"90d"`, `"12h"`, or `"never"`; 90 days when absent.
    expires_in: Option<String>,
    #[serde(default)]
    totp: bool,
}

/// `POST /api/v1/tokens`: issue a token; the secret is in this response only.
pub(crate) async fn create_token(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: CreateTokenBody = json_body(body)?;
    let name = TokenName::parse(&body.name)?;
    let role = body
        .role
        .ok_or_else(|| ApiError::bad_request("`role` is required: viewer, operator or admin"))?;
    // Same default as the CLI: 90 days; `"never"` only when asked for.
    let lifetime = match body.expires_in.as_deref() {
        None => Some(issuance::default_lifetime()),
        Some("never") => None,
        Some(s) => Some(
            humantime::parse_duration(s)
                .ok()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "`expires_in` `{s}` is not a duration like 90d or 12h (or \"never\")"
                    ))
                })?,
        ),
    };
    let new = NewToken {
        name,
        role,
        lifetime,
        bind_totp: body.totp,
    };
    let st = state.clone();
    let actor = caller.actor();
    let issued =
        blocking(move || Ok(issuance::create_token(&st.tokens, &st.audit, new, &actor)?)).await?;
    let totp = issued.totp.as_ref().map(|secret| {
        json!({
            "secret_base32": secret.base32(),
            "otpauth_url": secret.otpauth_url(issued.record.name.as_str()),
        })
    });
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": issued.record,
            "secret": issued.token.expose(),
            "totp": totp,
        })),
    ))
}

/// `DELETE /api/v1/tokens/{id}`.
pub(crate) async fn revoke_token(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenRecord>> {
    let id = TokenId::parse(&id)?;
    let actor = caller.actor();
    let record = blocking(move || {
        Ok(issuance::revoke_token(
            &state.tokens,
            &state.audit,
            &id,
            &actor,
        )?)
    })
    .await?;
    Ok(Json(record))
}

/// `GET /api/v1/access/review`: every token with its stale/expired flags,
/// as `gateway access review` prints it.
pub(crate) async fn review_access(State(state): State<Arc<AdminState>>) -> ApiResult<Json<Value>> {
    let days = state.config.stale_after_days;
    let entries = blocking(move || {
        Ok(state
            .tokens
            .review(chrono::Duration::days(i64::from(days)))?)
    })
    .await?;
    Ok(Json(json!({"stale_after_days": days, "tokens": entries})))
}

/// The rollout, or 404 `ota_disabled` when the gateway runs without `[ota]`.
fn rollout(state: &AdminState) -> ApiResult<crate::ota::agent::RolloutHandle> {
    state.ota.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ota_disabled",
            "the OTA agent is off on this gateway: add an [ota] section to its configuration (see docs/ota.md) and restart it",
        )
    })
}

/// `GET /api/v1/ota/status`: every campaign this gateway was assigned, its
/// wave and each device's update state (as `gateway ota status --json`).
pub(crate) async fn ota_status(
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<crate::ota::api::OtaStatus>> {
    let rollout = rollout(&state)?;
    blocking(move || crate::ota::api::status(rollout.states()).map_err(|e| ApiError::internal(&e)))
        .await
        .map(Json)
}

/// `POST /api/v1/ota/devices/{id}/retry`: another attempt for a device
/// that failed or rolled back in a campaign still running; the `ota.retry`
/// audit row names the caller's token.
pub(crate) async fn retry_ota_update(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let rollout = rollout(&state)?;
    let id = device_id(&id)?;
    match rollout.retry(id, caller.actor()).await {
        Ok(row) => Ok(Json(json!({"retried": true, "update": row}))),
        Err(e @ RetryError::NothingToRetry { .. }) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            e.code(),
            e.to_string(),
        )),
        Err(e @ RetryError::CampaignStopped { .. }) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string()))
        }
        Err(e @ RetryError::State(_)) => Err(ApiError::internal(&e)),
    }
}
