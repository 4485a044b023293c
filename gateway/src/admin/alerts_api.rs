//! The alert routes of the admin API (wired in [`super::routes`], guarded
//! like every route there) over the detector's [`AlertStore`]:
//!
//! | route | role | what |
//! | --- | --- | --- |
//! | `GET /api/v1/alerts?limit=N&open=true` | viewer | newest alerts first; `open` = unacknowledged only |
//! | `POST /api/v1/alerts/{id}/acknowledge` | operator | mark seen, body `{"note": "..."}` (optional); audited |
//! | `POST /api/v1/alerts/{id}/release` | operator | reactivate the alert's quarantined device; audited by the registry and here |
//!
//! Releasing is the only way out of a quarantine the detector imposed
//! besides `POST /api/v1/devices/{id}/reactivate`; both name the operator's
//! token in the audit rows.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wardgate_protocol::DeviceId;

use super::error::ErrorBody;
use super::{AdminState, ApiError, Caller};
use crate::anomaly::alert::Alert;
use crate::anomaly::store::{AlertStore, StoreError};
use crate::registry::{DeviceState, RegistryError};

type ApiResult<T> = Result<T, ApiError>;

/// Most alerts one `GET /api/v1/alerts` returns.
pub const MAX_PAGE: u32 = 1000;

fn store(state: &AdminState) -> ApiResult<AlertStore> {
    state.alerts.clone().ok_or_else(|| {
        ApiError::not_found(
            "anomaly detection is disabled on this gateway (anomaly.enabled = false)",
        )
    })
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(_) => ApiError::not_found(e.to_string()),
        other => ApiError::internal(&other),
    }
}

/// Run `f` on the alert store off the async runtime (SQLite blocks).
async fn on_store<T: Send + 'static>(
    store: &AlertStore,
    f: impl FnOnce(&AlertStore) -> Result<T, StoreError> + Send + 'static,
) -> ApiResult<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(store_error)
}

fn alert_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request(format!("`{raw}` is not an alert id (a positive integer)"))
    })
}

/// Body of acknowledge and release.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    /// For the audit row: at most 200 printable characters.
    #[schema(max_length = 200)]
    note: Option<String>,
}

/// The `{id}` of the alert routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct AlertPath {
    /// Alert id, a positive integer.
    #[param(example = 1)]
    #[allow(dead_code)]
    id: String,
}

/// Body of `GET /api/v1/alerts`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertPage {
    /// Newest first.
    alerts: Vec<Alert>,
}

/// Answer of `POST /api/v1/alerts/{id}/acknowledge`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Acknowledged {
    /// False when it was already acknowledged.
    changed: bool,
    /// The alert after the call.
    alert: Alert,
}

/// Answer of `POST /api/v1/alerts/{id}/release`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Released {
    /// The device reactivated.
    #[schema(value_type = String)]
    released: DeviceId,
    /// The alert after the call.
    alert: Alert,
}

fn note(body: Result<Bytes, BytesRejection>) -> ApiResult<String> {
    let bytes = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                e.status(),
                "payload_too_large",
                "request body exceeds admin.max_body_bytes; send a smaller body",
            )
        } else {
            ApiError::bad_request(format!("could not read the request body: {e}"))
        }
    })?;
    let parsed: NoteBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        NoteBody::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    let note = parsed.note.unwrap_or_default();
    if note.chars().count() > 200 || note.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "`note` must be at most 200 printable characters",
        ));
    }
    Ok(note)
}

/// Query of `GET /api/v1/alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Alerts to return: 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Unacknowledged alerts only.
    open: Option<bool>,
}

/// `GET /api/v1/alerts`.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", security(("bearer" = [])), params(AlertQuery),
    responses(
        (status = 200, description = "The newest alerts", body = AlertPage),
        (status = 400, description = "`limit` or `open` invalid", body = ErrorBody),
        (status = 404, description = "Anomaly detection is disabled", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<Arc<AdminState>>,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> ApiResult<Json<AlertPage>> {
    let Query(q) = q?;
    let store = store(&state)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {MAX_PAGE}"
        )));
    }
    let alerts = store
        .list_async(limit, q.open.unwrap_or(false))
        .await
        .map_err(store_error)?;
    Ok(Json(AlertPage { alerts }))
}

/// `POST /api/v1/alerts/{id}/acknowledge`.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts",
    security(("bearer" = [], "totp" = [])), params(AlertPath), request_body = Option<NoteBody>,
    responses(
        (status = 200, description = "Acknowledged (audited)", body = Acknowledged),
        (status = 400, description = "Bad id or body", body = ErrorBody),
        (status = 403, description = "Needs an operator token", body = ErrorBody),
        (status = 404, description = "No such alert, or anomaly detection is disabled", body = ErrorBody),
        (status = 413, description = "Body over `admin.max_body_bytes`", body = ErrorBody)))]
pub(crate) async fn acknowledge(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Acknowledged>> {
    let Path(id) = id?;
    let store = store(&state)?;
    let id = alert_id(&id)?;
    let note = note(body)?;
    let actor = caller.actor();
    let changed = on_store(&store, move |s| s.acknowledge(id, &actor, &note)).await?;
    let alert = on_store(&store, move |s| s.get(id)).await?;
    Ok(Json(Acknowledged { changed, alert }))
}

/// `POST /api/v1/alerts/{id}/release`: reactivate the alert's device if
/// it is quarantined; 409 if it is not (or the alert names no device).
#[utoipa::path(post, path = "/api/v1/alerts/{id}/release", tag = "alerts",
    security(("bearer" = [], "totp" = [])), params(AlertPath), request_body = Option<NoteBody>,
    responses(
        (status = 200, description = "The device is active again (audited)", body = Released),
        (status = 400, description = "Bad id or body", body = ErrorBody),
        (status = 403, description = "Needs an operator token", body = ErrorBody),
        (status = 404, description = "No such alert or device, or anomaly detection is disabled", body = ErrorBody),
        (status = 409, description = "The device is not quarantined, or the alert names none", body = ErrorBody),
        (status = 413, description = "Body over `admin.max_body_bytes`", body = ErrorBody)))]
pub(crate) async fn release(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Released>> {
    let Path(id) = id?;
    let store = store(&state)?;
    let id = alert_id(&id)?;
    let note = note(body)?;
    let alert = on_store(&store, move |s| s.get(id)).await?;
    let Some(device) = alert.device.clone() else {
        return Err(ApiError::conflict(format!(
            "alert {id} is about {} and names no device; there is nothing to release",
            alert.subject
        )));
    };
    let record = state
        .registry
        .get_async(device.clone())
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found(format!("device {device} is no longer enrolled")))?;
    if record.state != DeviceState::Quarantined {
        return Err(ApiError::conflict(format!(
            "device {device} is {}, not quarantined; nothing to release",
            record.state
        )));
    }
    let actor = caller.actor();
    let reason = if note.is_empty() {
        format!("released after anomaly alert #{id}")
    } else {
        format!("released after anomaly alert #{id}: {note}")
    };
    state
        .registry
        .set_state_async(device.clone(), DeviceState::Active, actor.clone(), reason)
        .await
        .map_err(|e| match e {
            RegistryError::NotFound(_) => ApiError::not_found(e.to_string()),
            RegistryError::Revoked(_) => ApiError::conflict(e.to_string()),
            other => ApiError::internal(&other),
        })?;
    let alert = on_store(&store, move |s| {
        s.mark_released(id, &actor, &note)?;
        s.get(id)
    })
    .await?;
    Ok(Json(Released {
        released: device,
        alert,
    }))
}
