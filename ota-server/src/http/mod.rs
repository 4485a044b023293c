//! The HTTP API: routes, shared state, authentication extractors and JSON
//! errors.
//!
//! | route | who | module |
//! | --- | --- | --- |
//! | `GET /metadata/{file}`, `GET /targets/{*path}` | anyone (TUF verifies) | [`repo`] |
//! | `POST /api/v1/releases/{*target}` | manufacturer token | [`releases`] |
//! | `GET /api/v1/releases`, `/api/v1/audit`, `/api/v1/campaigns...` | admin token | [`releases`], [`campaigns`] |
//! | `POST /api/v1/gateway/assignments`, `/api/v1/gateway/results` | gateway client certificate | [`campaigns`] |
//! | `GET /healthz`, `GET /metrics` | anyone | here |
//! | `GET /api/v1/openapi.json` (this API's OpenAPI document) | anyone | [`openapi`] |
//!
//! Every error is JSON `{"error": {"code": ..., "message": ...}}` with a
//! stable `code` (see [`ApiError`]) and a message saying what to do.

pub mod campaigns;
pub mod openapi;
pub mod releases;
pub mod repo;

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tuf_repo::ManufacturerName;
use utoipa::ToSchema;
use wardgate_protocol::GatewayId;

use crate::auth::{PeerIdentity, Principal, Tokens};
use crate::config::LimitsConfig;
use crate::db::{AuditEntry, Db};
use crate::metrics::{Metrics, RouteLabels};
use crate::repo::Repository;

/// Everything a handler needs.
#[derive(Debug)]
pub struct AppState {
    /// The TUF repository.
    pub repo: Arc<Repository>,
    /// The database.
    pub db: Db,
    /// Token hashes.
    pub tokens: Tokens,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Limits.
    pub limits: LimitsConfig,
}

impl AppState {
    /// Writes an audit row; a failure to audit is logged, not hidden.
    pub async fn audit(&self, actor: String, action: &str, result: Result<String, &ApiError>) {
        let (outcome, code, detail) = match result {
            Ok(d) => ("ok".to_owned(), None, d),
            Err(e) => (
                "refused".to_owned(),
                Some(e.code.to_owned()),
                e.message.clone(),
            ),
        };
        let entry = AuditEntry {
            actor,
            action: action.to_owned(),
            outcome,
            code,
            detail,
        };
        if let Err(e) = self.db.audit(entry).await {
            tracing::error!(error = %e, action, "cannot write audit row");
        }
    }
}

/// A JSON error with a stable code.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 500 with a message that points at the logs.
    pub fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error: {e}; see the server log"),
        )
    }
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
#[schema(as = ErrorBody)]
pub(crate) struct ErrorJson<'a> {
    error: ErrorInner<'a>,
}

/// Schema name of the error body in the OpenAPI document.
pub(crate) type ErrorBody = ErrorJson<'static>;

/// The `error` object: a stable code for scripts, advice for people.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorInner<'a> {
    /// Stable machine-readable code (`unauthenticated`, `forbidden`,
    /// `client_certificate_required`, `not_found`, ...).
    #[schema(example = "forbidden")]
    code: &'a str,
    /// What went wrong and what to do.
    message: &'a str,
}

/// A path segment axum could not read (bytes that are not UTF-8 once
/// percent-decoded): a JSON 400 like every other error, not axum's plain
/// text.
impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("{}; see docs/ota-server.md", e.body_text()),
        )
    }
}

/// A query string that does not parse (`limit=abc`): a JSON 400 naming
/// the parameter.
impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{}; see docs/ota-server.md", e.body_text()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorJson {
            error: ErrorInner {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// `Json<T>` whose rejection is an [`ApiError`] (`malformed_json`,
/// `payload_too_large`, `unsupported_media_type`).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(r) => {
                let status = r.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    _ => "malformed_json",
                };
                Err(ApiError::new(
                    status,
                    code,
                    format!(
                        "{}; send a JSON body as documented in docs/ota-server.md",
                        r.body_text()
                    ),
                ))
            }
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Refuses the request in `parts` from `actor` with `status`, `code` and
/// `message`: counted, logged and audited under the request's method and
/// path, then returned for the client.
async fn refuse(
    state: &AppState,
    parts: &Parts,
    actor: String,
    status: StatusCode,
    code: &'static str,
    message: &str,
) -> ApiError {
    let e = ApiError::new(status, code, message);
    let action = format!("{} {}", parts.method, parts.uri.path());
    state.metrics.refused(e.code);
    tracing::warn!(actor = %actor, action, code = e.code, "request refused");
    state.audit(actor, &action, Err(&e)).await;
    e
}

async fn token_principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let Some(tok) = bearer(parts) else {
        return Err(refuse(
            state,
            parts,
            "anonymous".into(),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing `Authorization: Bearer <token>`; ask the operator for a token (`ota-server token`)",
        )
        .await);
    };
    match state.tokens.lookup(tok) {
        Some(p) => Ok(p),
        None => Err(refuse(
            state,
            parts,
            "unknown-token".into(),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the bearer token is not known; check it or ask the operator for a new one",
        )
        .await),
    }
}

/// The token's principal if `pick` accepts its kind; any other kind of
/// token is refused as forbidden, saying what the endpoint `needs`.
async fn principal_as<T>(
    parts: &Parts,
    state: &AppState,
    pick: impl FnOnce(Principal) -> Result<T, Principal>,
    needs: &str,
) -> Result<T, ApiError> {
    match pick(token_principal(parts, state).await?) {
        Ok(t) => Ok(t),
        Err(p) => Err(refuse(
            state,
            parts,
            p.actor(),
            StatusCode::FORBIDDEN,
            "forbidden",
            needs,
        )
        .await),
    }
}

/// An authenticated administrator.
#[derive(Debug, Clone)]
pub struct Admin(pub String);

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let admin = |p| match p {
            Principal::Admin(n) => Ok(Self(n)),
            other @ Principal::Manufacturer(_) => Err(other),
        };
        principal_as(parts, state, admin, "this endpoint needs an admin token").await
    }
}

/// An authenticated manufacturer.
#[derive(Debug, Clone)]
pub struct Manufacturer(pub ManufacturerName);

impl FromRequestParts<Arc<AppState>> for Manufacturer {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let manufacturer = |p| match p {
            Principal::Manufacturer(m) => Ok(Self(m)),
            other @ Principal::Admin(_) => Err(other),
        };
        principal_as(
            parts,
            state,
            manufacturer,
            "uploads need a manufacturer token",
        )
        .await
    }
}

/// A gateway authenticated by its client certificate.
#[derive(Debug, Clone)]
pub struct Gateway(pub GatewayId);

impl FromRequestParts<Arc<AppState>> for Gateway {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let id = parts
            .extensions
            .get::<PeerIdentity>()
            .and_then(|p| p.gateway.clone());
        match id {
            Some(g) => Ok(Self(g)),
            None => Err(refuse(state, parts, "anonymous".into(), StatusCode::UNAUTHORIZED, "client_certificate_required", "the gateway API needs a client certificate from the ward CA naming urn:wardgate:gateway:<id>").await),
        }
    }
}

/// Body of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `timestamp_expired` when the timestamp was not refreshed.
    #[schema(pattern = "^(ok|timestamp_expired)$")]
    status: &'static str,
    /// Repository generation being served.
    generation: u64,
    snapshot_version: u64,
    timestamp_version: u64,
    /// RFC 3339.
    timestamp_expires: String,
    /// Targets published.
    releases: usize,
}

/// `GET /healthz`: 503 once the timestamp has expired (gateways would
/// refuse it).
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses(
        (status = 200, description = "Serving a fresh timestamp", body = Health),
        (status = 503, description = "The timestamp has expired: check the refresher", body = Health)))]
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let s = state.repo.state();
    let expires = s.timestamp_expires();
    let fresh = expires > jiff::Timestamp::now();
    let body = Health {
        status: if fresh { "ok" } else { "timestamp_expired" },
        generation: s.generation,
        snapshot_version: s.snapshot.signed.version.get(),
        timestamp_version: s.timestamp.signed.version.get(),
        timestamp_expires: expires.to_string(),
        releases: s.published.len(),
    };
    let status = if fresh {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Every metric family of the server",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    state
        .metrics
        .http_requests
        .get_or_create(&RouteLabels {
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see docs/ota-server.md",
    )
}

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    use axum::extract::DefaultBodyLimit;
    use tower_http::timeout::TimeoutLayer;
    let limits = state.limits.clone();
    let api = Router::new()
        .route("/metadata/{file}", get(repo::metadata))
        .route("/targets/{*path}", get(repo::target))
        .route("/api/v1/releases", get(releases::list))
        .route("/api/v1/audit", get(releases::audit))
        .route(
            "/api/v1/campaigns",
            post(campaigns::create).get(campaigns::list),
        )
        .route("/api/v1/campaigns/{id}", get(campaigns::status))
        .route("/api/v1/campaigns/{id}/pause", post(campaigns::pause))
        .route("/api/v1/campaigns/{id}/resume", post(campaigns::resume))
        .route("/api/v1/gateway/assignments", post(campaigns::assignments))
        .route("/api/v1/gateway/results", post(campaigns::results))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(openapi::DOCUMENT_PATH, get(openapi::serve))
        .layer(DefaultBodyLimit::max(limits.max_json_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    // Uploads stream their own bounded body under their own timeout.
    let upload = Router::new()
        .route("/api/v1/releases/{*target}", post(releases::upload))
        .layer(DefaultBodyLimit::disable());
    api.merge(upload)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            count_requests,
        ))
        .with_state(state)
}
