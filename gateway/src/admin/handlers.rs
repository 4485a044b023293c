//! Handlers of the admin API. Each runs after the guard has authorised its
//! [`crate::access::Action`], so a handler only does the work and its audit:
//! registry changes are audited by the registry in the same transaction,
//! token changes here, with the caller's token id as the actor.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wardgate_protocol::DeviceId;

use super::error::{ApiError, ErrorBody};
use super::guard::Caller;
use super::state::AdminState;
use crate::access::issuance;
use crate::access::name::{TokenId, TokenName};
use crate::access::review::ReviewEntry;
use crate::access::role::Role;
use crate::access::token::record::{NewToken, TokenKind, TokenRecord};
use crate::audit::{AuditRecord, ChainProblem};
use crate::ota::api::RetryError;
use crate::ota::device_state::DeviceUpdate;
use crate::registry::{DeviceRecord, DeviceState, NewDevice, RegistryError};
use crate::uplink::{UplinkMonitor, UplinkStatus};

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

/// Body of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` while the server answers.
    #[schema(example = "ok")]
    status: &'static str,
}

/// `GET /healthz`: liveness, no authentication.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The admin API answers", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Unknown route.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such admin API route; see docs/gateway.md for the route list")
}

/// `GET /metrics`: the shared Prometheus registry (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "status", security(("bearer" = [])),
    responses((status = 200, description = "Every metric family of the gateway",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
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

/// Enrolled devices per registry state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceCounts {
    active: usize,
    quarantined: usize,
    revoked: usize,
}

/// Tokens that would authenticate now (not revoked, not expired).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenCounts {
    usable: usize,
    break_glass_usable: usize,
}

/// Body of `GET /api/v1/status`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GatewayStatus {
    /// The gateway's version.
    version: &'static str,
    /// Seconds since the admin API started.
    uptime_seconds: u64,
    devices: DeviceCounts,
    tokens: TokenCounts,
    /// Connected, outbox depth and oldest message age; null when the
    /// gateway runs without an uplink.
    uplink: Option<UplinkStatus>,
}

/// `GET /api/v1/status`.
#[utoipa::path(get, path = "/api/v1/status", tag = "status", security(("bearer" = [])),
    responses((status = 200, description = "Device and token counts, uplink status", body = GatewayStatus)))]
pub(crate) async fn status(State(state): State<Arc<AdminState>>) -> ApiResult<Json<GatewayStatus>> {
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
    Ok(Json(GatewayStatus {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        devices: DeviceCounts {
            active: count(DeviceState::Active),
            quarantined: count(DeviceState::Quarantined),
            revoked: count(DeviceState::Revoked),
        },
        tokens: TokenCounts {
            usable: usable.len(),
            break_glass_usable: usable
                .iter()
                .filter(|t| t.kind == TokenKind::BreakGlass)
                .count(),
        },
        uplink: state.uplink.as_ref().map(UplinkMonitor::status),
    }))
}

/// `GET /api/v1/devices`.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, description = "Every enrolled device", body = Vec<DeviceRecord>)))]
pub(crate) async fn list_devices(
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<Vec<DeviceRecord>>> {
    blocking(move || state.registry.list().map_err(registry_error))
        .await
        .map(Json)
}

/// `GET /api/v1/devices/{id}`.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(DevicePath),
    responses(
        (status = 200, description = "The device", body = DeviceRecord),
        (status = 400, description = "`id` is not a device id", body = ErrorBody),
        (status = 404, description = "No such device is enrolled", body = ErrorBody)))]
pub(crate) async fn get_device(
    State(state): State<Arc<AdminState>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<DeviceRecord>> {
    let Path(id) = id?;
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
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", security(("bearer" = [], "totp" = [])),
    request_body = NewDevice,
    responses(
        (status = 201, description = "Enrolled (audited `device.enrolled`)", body = DeviceRecord),
        (status = 403, description = "Needs an admin token", body = ErrorBody),
        (status = 400, description = "Not a valid enrolment", body = ErrorBody),
        (status = 409, description = "Already enrolled, or revoked", body = ErrorBody),
        (status = 413, description = "Body over `admin.max_body_bytes`", body = ErrorBody)))]
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
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeBody {
    /// Why, for the audit row: at most 200 printable characters; the
    /// token's name when absent.
    #[schema(max_length = 200)]
    reason: Option<String>,
}

/// The `{id}` of the device routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct DevicePath {
    /// Device id: 1 to 64 of `A-Z a-z 0-9 - _`.
    #[param(example = "pump-01")]
    #[allow(dead_code)]
    id: String,
}

/// Answer of a device state change.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StateChange {
    /// False when the device was already in that state.
    changed: bool,
    /// The device after the call.
    device: DeviceRecord,
}

async fn change_state(
    state: Arc<AdminState>,
    caller: &Caller,
    id: Result<Path<String>, PathRejection>,
    to: DeviceState,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<StateChange>> {
    let Path(id) = id?;
    let id = device_id(&id)?;
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
    Ok(Json(StateChange { changed, device }))
}

/// `POST /api/v1/devices/{id}/quarantine`: confine the device (status and
/// OTA only).
#[utoipa::path(post, path = "/api/v1/devices/{id}/quarantine", tag = "devices",
    security(("bearer" = [], "totp" = [])), params(DevicePath), request_body = Option<ChangeBody>,
    responses(
        (status = 200, description = "Quarantined (audited by the registry)", body = StateChange),
        (status = 403, description = "Needs an operator token", body = ErrorBody),
        (status = 400, description = "Bad id or body", body = ErrorBody),
        (status = 404, description = "No such device is enrolled", body = ErrorBody),
        (status = 409, description = "The device is revoked", body = ErrorBody),
        (status = 413, description = "Body over `admin.max_body_bytes`", body = ErrorBody)))]
pub(crate) async fn quarantine(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<StateChange>> {
    change_state(state, &caller, id, DeviceState::Quarantined, body).await
}

/// `POST /api/v1/devices/{id}/reactivate`: back to active.
#[utoipa::path(post, path = "/api/v1/devices/{id}/reactivate", tag = "devices",
    security(("bearer" = [], "totp" = [])), params(DevicePath), request_body = Option<ChangeBody>,
    responses(
        (status = 200, description = "Active (audited by the registry)", body = StateChange),
        (status = 403, description = "Needs an operator token", body = ErrorBody),
        (status = 400, description = "Bad id or body", body = ErrorBody),
        (status = 404, description = "No such device is enrolled", body = ErrorBody),
        (status = 409, description = "The device is revoked", body = ErrorBody),
        (status = 413, description = "Body over `admin.max_body_bytes`", body = ErrorBody)))]
pub(crate) async fn reactivate(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<StateChange>> {
    change_state(state, &caller, id, DeviceState::Active, body).await
}

/// `POST /api/v1/devices/{id}/revoke`: final; the edge disconnects the
/// device.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices",
    security(("bearer" = [], "totp" = [])), params(DevicePath), request_body = Option<ChangeBody>,
    responses(
        (status = 200, description = "Revoked (audited by the registry)", body = StateChange),
        (status = 403, description = "Needs an admin token", body = ErrorBody),
        (status = 400, description = "Bad id or body", body = ErrorBody),
        (status = 404, description = "No such device is enrolled", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody),
        (status = 413, description = "Body over `admin.max_body_bytes`", body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<StateChange>> {
    change_state(state, &caller, id, DeviceState::Revoked, body).await
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Rows to return: 1 to `admin.audit_page_max`, default 100.
    #[param(minimum = 1)]
    limit: Option<u32>,
}

/// Body of `GET /api/v1/audit`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    /// Newest first.
    rows: Vec<AuditRecord>,
}

/// `GET /api/v1/audit?limit=N`: the newest rows, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses(
        (status = 200, description = "The newest audit rows", body = AuditPage),
        (status = 400, description = "`limit` out of range or not a number", body = ErrorBody)))]
pub(crate) async fn recent_audit(
    State(state): State<Arc<AdminState>>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    let Query(q) = q?;
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
    Ok(Json(AuditPage { rows }))
}

/// Body of `GET /api/v1/audit/verify`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditVerification {
    /// No problem found.
    intact: bool,
    /// Rows checked.
    rows: u64,
    /// Where the chain breaks, in row order.
    problems: Vec<ChainProblem>,
}

/// `GET /api/v1/audit/verify`: walk the hash chain.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "The hash chain walked", body = AuditVerification)))]
pub(crate) async fn verify_audit(
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<AuditVerification>> {
    let report = blocking(move || state.audit.verify().map_err(|e| ApiError::internal(&e))).await?;
    Ok(Json(AuditVerification {
        intact: report.is_intact(),
        rows: report.rows,
        problems: report.problems,
    }))
}

/// `GET /api/v1/tokens`.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every token, without secrets", body = Vec<TokenRecord>),
        (status = 403, description = "Needs an admin token", body = ErrorBody)))]
pub(crate) async fn list_tokens(
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<Vec<TokenRecord>>> {
    blocking(move || Ok(state.tokens.list()?)).await.map(Json)
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTokenBody {
    /// Holder label: 1 to 64 of `A-Z a-z 0-9 . _ @ -`.
    #[schema(example = "charge-nurse")]
    name: String,
    /// Required.
    role: Option<Role>,
    /// e.g. `"90d"`, `"12h"`, or `"never"`; 90 days when absent.
    expires_in: Option<String>,
    /// Bind a fresh TOTP secret (operator and admin only).
    #[serde(default)]
    totp: bool,
}

/// The TOTP secret of a new TOTP-bound token, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TotpEnrolment {
    secret_base32: String,
    otpauth_url: String,
}

/// Answer of `POST /api/v1/tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IssuedTokenBody {
    token: TokenRecord,
    /// The bearer secret, `wgt_...`: shown only in this response.
    secret: String,
    /// Set when the token is TOTP-bound.
    totp: Option<TotpEnrolment>,
}

/// `POST /api/v1/tokens`: issue a token; the secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", security(("bearer" = [], "totp" = [])),
    request_body = CreateTokenBody,
    responses(
        (status = 201, description = "Issued (audited)", body = IssuedTokenBody),
        (status = 400, description = "Bad name, role, lifetime or TOTP for a viewer", body = ErrorBody),
        (status = 403, description = "Needs an admin token", body = ErrorBody),
        (status = 413, description = "Body over `admin.max_body_bytes`", body = ErrorBody)))]
pub(crate) async fn create_token(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<IssuedTokenBody>)> {
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
    let totp = issued.totp.as_ref().map(|secret| TotpEnrolment {
        secret_base32: secret.base32(),
        otpauth_url: secret.otpauth_url(issued.record.name.as_str()),
    });
    Ok((
        StatusCode::CREATED,
        Json(IssuedTokenBody {
            secret: issued.token.expose().to_owned(),
            token: issued.record,
            totp,
        }),
    ))
}

/// The `{id}` of `DELETE /api/v1/tokens/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TokenPath {
    /// The token's public id: 16 lowercase hex digits.
    #[param(example = "0123456789abcdef")]
    #[allow(dead_code)]
    id: String,
}

/// `DELETE /api/v1/tokens/{id}`.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    security(("bearer" = [], "totp" = [])), params(TokenPath),
    responses(
        (status = 200, description = "Revoked (audited)", body = TokenRecord),
        (status = 400, description = "`id` is not a token id", body = ErrorBody),
        (status = 403, description = "Needs an admin token", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody)))]
pub(crate) async fn revoke_token(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<TokenRecord>> {
    let Path(id) = id?;
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

/// Body of `GET /api/v1/access/review`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccessReview {
    /// `admin.stale_after_days`.
    stale_after_days: u32,
    tokens: Vec<ReviewEntry>,
}

/// `GET /api/v1/access/review`: every token with its stale/expired flags,
/// as `gateway access review` prints it.
#[utoipa::path(get, path = "/api/v1/access/review", tag = "tokens", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every token with what needs attention", body = AccessReview),
        (status = 403, description = "Needs an admin token", body = ErrorBody)))]
pub(crate) async fn review_access(
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<AccessReview>> {
    let days = state.config.stale_after_days;
    let entries = blocking(move || {
        Ok(state
            .tokens
            .review(chrono::Duration::days(i64::from(days)))?)
    })
    .await?;
    Ok(Json(AccessReview {
        stale_after_days: days,
        tokens: entries,
    }))
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
#[utoipa::path(get, path = "/api/v1/ota/status", tag = "ota", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every campaign and device update", body = crate::ota::api::OtaStatus),
        (status = 404, description = "`ota_disabled`: the gateway runs without `[ota]`", body = ErrorBody)))]
pub(crate) async fn ota_status(
    State(state): State<Arc<AdminState>>,
) -> ApiResult<Json<crate::ota::api::OtaStatus>> {
    let rollout = rollout(&state)?;
    blocking(move || crate::ota::api::status(rollout.states()).map_err(|e| ApiError::internal(&e)))
        .await
        .map(Json)
}

/// Answer of `POST /api/v1/ota/devices/{id}/retry`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Retried {
    /// Always true.
    retried: bool,
    /// The device's update row after the retry.
    update: DeviceUpdate,
}

/// `POST /api/v1/ota/devices/{id}/retry`: another attempt for a device
/// that failed or rolled back in a campaign still running; the `ota.retry`
/// audit row names the caller's token.
#[utoipa::path(post, path = "/api/v1/ota/devices/{id}/retry", tag = "ota",
    security(("bearer" = [], "totp" = [])), params(DevicePath),
    responses(
        (status = 200, description = "Another attempt (audited `ota.retry`)", body = Retried),
        (status = 400, description = "`id` is not a device id", body = ErrorBody),
        (status = 403, description = "Needs an operator token", body = ErrorBody),
        (status = 404, description = "`ota_disabled`, or nothing to retry for this device", body = ErrorBody),
        (status = 409, description = "The campaign has stopped", body = ErrorBody)))]
pub(crate) async fn retry_ota_update(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Retried>> {
    let Path(id) = id?;
    let rollout = rollout(&state)?;
    let id = device_id(&id)?;
    match rollout.retry(id, caller.actor()).await {
        Ok(row) => Ok(Json(Retried {
            retried: true,
            update: row,
        })),
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
