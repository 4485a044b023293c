//! Campaign API: administrators create, list, inspect, pause and resume
//! campaigns; gateways (client certificate) fetch assignments and post
//! per-device results. The rules live in [`crate::campaign`].

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, ToSchema};

use super::{Admin, ApiError, ApiJson, AppState, ErrorBody, Gateway};
use crate::campaign::{
    self, Assignment, CampaignError, DeviceResult, InventoryDevice, NewCampaign, Status,
};
use crate::db::DbError;
use wardgate_protocol::DeviceId;

fn campaign_error(e: CampaignError) -> ApiError {
    let (status, code) = match &e {
        CampaignError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_campaign"),
        CampaignError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        CampaignError::State { .. } => (StatusCode::CONFLICT, "campaign_state"),
        CampaignError::NotAssigned { .. } => (StatusCode::CONFLICT, "not_assigned"),
        CampaignError::Db(_) => return ApiError::internal(&e),
    };
    ApiError::new(status, code, e.to_string())
}

/// Runs `f` in one transaction on the database thread.
async fn in_tx<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, CampaignError> + Send + 'static,
{
    let r = state
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            match f(&tx) {
                Ok(v) => {
                    tx.commit()?;
                    Ok(Ok(v))
                }
                Err(CampaignError::Db(e)) => Err(e),
                Err(e) => Ok(Err(e)),
            }
        })
        .await;
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(campaign_error(e)),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

async fn audited<T>(
    state: &AppState,
    actor: String,
    action: &str,
    detail: impl FnOnce(&T) -> String,
    r: Result<T, ApiError>,
) -> Result<T, ApiError> {
    match &r {
        Ok(v) => state.audit(actor, action, Ok(detail(v))).await,
        Err(e) => {
            state.metrics.refused(e.code);
            tracing::warn!(actor = %actor, action, code = e.code, "request refused");
            state.audit(actor, action, Err(e)).await;
        }
    }
    r
}

/// Response of campaign creation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Created {
    /// New campaign id.
    pub id: String,
}

/// The `{id}` of the campaign routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CampaignPath {
    /// Campaign id, as `POST /api/v1/campaigns` returned it.
    #[allow(dead_code)]
    id: String,
}

/// `POST /api/v1/campaigns` (admin).
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", security(("admin_token" = [])),
    request_body = NewCampaign,
    responses(
        (status = 201, description = "Created (audited `campaign.create`)", body = Created),
        (status = 400, description = "`invalid_campaign` or `malformed_json`", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 413, description = "Body over `limits.max_json_bytes`", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Admin(admin): Admin,
    body: Result<ApiJson<NewCampaign>, ApiError>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let actor = format!("admin:{admin}");
    let r = async {
        let ApiJson(req) = body?;
        let spec = req.validate().map_err(campaign_error)?;
        // Scope the campaign to the hardware the manufacturer signed the
        // release for, so a ward's other devices are never assigned it.
        let hardware_ids = release_hardware_ids(&state, spec.target());
        let spec = spec.scoped_to_hardware(hardware_ids);
        in_tx(&state, move |tx| campaign::create(tx, &spec)).await
    }
    .await;
    let id = audited(
        &state,
        actor,
        "campaign.create",
        |id: &String| format!("created campaign {id}"),
        r,
    )
    .await?;
    tracing::info!(campaign_id = %id, admin = %admin, "campaign created");
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// The signed `custom.hardware_ids` of a published target, if any.
fn release_hardware_ids(state: &AppState, target: &tuf_repo::TargetPath) -> Option<Vec<String>> {
    let repo = state.repo.state();
    let ids: Vec<String> = repo
        .published
        .get(target)?
        .custom
        .get("hardware_ids")?
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// `GET /api/v1/campaigns` (admin).
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every campaign", body = Vec<Status>),
        (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<Status>>, ApiError> {
    in_tx(&state, |tx| {
        campaign::list(tx)?
            .iter()
            .map(|id| campaign::status(tx, id))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map(Json)
}

/// `GET /api/v1/campaigns/{id}` (admin).
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns", security(("admin_token" = [])),
    params(CampaignPath),
    responses(
        (status = 200, description = "The campaign", body = Status),
        (status = 400, description = "The id is not readable", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody)))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Status>, ApiError> {
    let Path(id) = id?;
    in_tx(&state, move |tx| campaign::status(tx, &id))
        .await
        .map(Json)
}

async fn set_paused(
    state: Arc<AppState>,
    admin: String,
    id: String,
    pause: bool,
) -> Result<Json<Status>, ApiError> {
    let action = if pause {
        "campaign.pause"
    } else {
        "campaign.resume"
    };
    let cid = id.clone();
    let r = in_tx(&state, move |tx| {
        campaign::set_paused(tx, &cid, pause)?;
        campaign::status(tx, &cid)
    })
    .await;
    audited(
        &state,
        format!("admin:{admin}"),
        action,
        |s: &Status| format!("campaign {} is {}", s.id, s.state),
        r,
    )
    .await
    .map(Json)
}

/// `POST /api/v1/campaigns/{id}/pause` (admin).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", tag = "campaigns", security(("admin_token" = [])),
    params(CampaignPath),
    responses(
        (status = 200, description = "Paused (audited)", body = Status),
        (status = 400, description = "The id is not readable", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "`campaign_state`: halted or completed", body = ErrorBody)))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Admin(a): Admin,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Status>, ApiError> {
    let Path(id) = id?;
    set_paused(state, a, id, true).await
}

/// `POST /api/v1/campaigns/{id}/resume` (admin).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", tag = "campaigns", security(("admin_token" = [])),
    params(CampaignPath),
    responses(
        (status = 200, description = "Active again (audited)", body = Status),
        (status = 400, description = "The id is not readable", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "`campaign_state`: halted or completed", body = ErrorBody)))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Admin(a): Admin,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Status>, ApiError> {
    let Path(id) = id?;
    set_paused(state, a, id, false).await
}

/// Body of `POST /api/v1/gateway/assignments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryReport {
    /// Every device the gateway currently manages (at most 10000).
    #[schema(max_items = 10000)]
    pub devices: Vec<InventoryEntry>,
}

/// One inventory entry: a bare device id, or the device with its hardware
/// id and running firmware (what current gateways send).
#[derive(Debug)]
pub enum InventoryEntry {
    /// Only the id.
    Id(DeviceId),
    /// The id with what the gateway's registry knows.
    Device(InventoryDevice),
}

/// By the JSON type of the entry, so that a refusal names what was wrong
/// inside it (`invalid device id "Pump/07"`) rather than that it matched
/// neither form.
impl<'de> Deserialize<'de> for InventoryEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::String(_) => DeviceId::deserialize(v).map(Self::Id),
            serde_json::Value::Object(_) => InventoryDevice::deserialize(v).map(Self::Device),
            _ => Err(serde_json::Error::custom(
                "an inventory entry is a device id or an object with `device_id`",
            )),
        }
        .map_err(D::Error::custom)
    }
}

/// Either form: a device id, or an [`InventoryDevice`] object.
impl utoipa::PartialSchema for InventoryEntry {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[A-Za-z0-9_-]{1,64}$"))
                    .description(Some("A bare device id")),
            )
            .item(Ref::from_schema_name("InventoryDevice"))
            .into()
    }
}

impl ToSchema for InventoryEntry {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            "InventoryDevice".to_owned(),
            <InventoryDevice as utoipa::PartialSchema>::schema(),
        ));
    }
}

impl From<InventoryEntry> for InventoryDevice {
    fn from(e: InventoryEntry) -> Self {
        match e {
            InventoryEntry::Id(id) => id.into(),
            InventoryEntry::Device(d) => d,
        }
    }
}

/// Most devices one gateway may report.
pub const MAX_DEVICES_PER_GATEWAY: usize = 10_000;

fn minute_of_day() -> u16 {
    use chrono::Timelike;
    let now = chrono::Utc::now();
    u16::try_from(now.hour() * 60 + now.minute()).unwrap_or(0)
}

/// `POST /api/v1/gateway/assignments` (gateway).
#[utoipa::path(post, path = "/api/v1/gateway/assignments", tag = "gateway", security(("gateway_certificate" = [])),
    request_body = InventoryReport,
    responses(
        (status = 200, description = "What this gateway should install now (its inventory is recorded)", body = Vec<Assignment>),
        (status = 400, description = "`invalid_inventory` or `malformed_json`", body = ErrorBody),
        (status = 413, description = "`too_many_devices`, or body over `limits.max_json_bytes`", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody)))]
pub async fn assignments(
    State(state): State<Arc<AppState>>,
    Gateway(gw): Gateway,
    body: Result<ApiJson<InventoryReport>, ApiError>,
) -> Result<Json<Vec<Assignment>>, ApiError> {
    let actor = format!("gateway:{gw}");
    let r = async {
        let ApiJson(req) = body?;
        if req.devices.len() > MAX_DEVICES_PER_GATEWAY {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_devices",
                format!("at most {MAX_DEVICES_PER_GATEWAY} devices per gateway"),
            ));
        }
        let devices: Vec<InventoryDevice> = req.devices.into_iter().map(Into::into).collect();
        for d in &devices {
            d.check().map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_inventory", e.to_string())
            })?;
        }
        let g = gw.clone();
        let m = minute_of_day();
        in_tx(&state, move |tx| {
            campaign::assignments_for(tx, &g, &devices, m)
        })
        .await
    }
    .await;
    if let Err(e) = &r {
        state.metrics.refused(e.code);
        state.audit(actor, "gateway.assignments", Err(e)).await;
    }
    r.map(Json)
}

/// Body of `POST /api/v1/gateway/results`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultsReport {
    /// Campaign the results belong to.
    pub campaign_id: String,
    /// Per-device results.
    pub results: Vec<DeviceResult>,
}

/// `POST /api/v1/gateway/results` (gateway).
#[utoipa::path(post, path = "/api/v1/gateway/results", tag = "gateway", security(("gateway_certificate" = [])),
    request_body = ResultsReport,
    responses(
        (status = 200, description = "Recorded (audited); the campaign after them", body = Status),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "`not_assigned`: a device this gateway was not assigned", body = ErrorBody),
        (status = 413, description = "Body over `limits.max_json_bytes`", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody)))]
pub async fn results(
    State(state): State<Arc<AppState>>,
    Gateway(gw): Gateway,
    body: Result<ApiJson<ResultsReport>, ApiError>,
) -> Result<Json<Status>, ApiError> {
    let actor = format!("gateway:{gw}");
    let metrics = Arc::clone(&state.metrics);
    let r = async {
        let ApiJson(req) = body?;
        let g = gw.clone();
        let outcomes: Vec<&'static str> = req.results.iter().map(|r| r.outcome.as_str()).collect();
        let s = in_tx(&state, move |tx| {
            campaign::record_results(tx, &req.campaign_id, &g, &req.results)?;
            campaign::status(tx, &req.campaign_id)
        })
        .await?;
        for o in outcomes {
            metrics
                .gateway_results
                .get_or_create(&crate::metrics::CodeLabels { code: o.into() })
                .inc();
        }
        Ok(s)
    }
    .await;
    audited(
        &state,
        actor,
        "gateway.results",
        |s: &Status| {
            format!(
                "campaign {} now {} ({} ok, {} failed)",
                s.id, s.state, s.totals.success, s.totals.failure
            )
        },
        r,
    )
    .await
    .map(Json)
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::internal(&e)
    }
}
