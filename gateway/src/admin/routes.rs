//! The admin API's routes: each is mapped to an [`Action`] and put behind
//! the guard ([`super::guard`]), and the whole router gets its limits:
//! request body size (`admin.max_body_bytes`), time per request
//! (`admin.request_timeout`) and concurrent requests
//! (`admin.max_concurrent_requests`).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;

use super::error::ApiError;
use super::guard;
use super::handlers;
use super::state::AdminState;
use crate::access::policy::Action;

fn guarded(
    state: &Arc<AdminState>,
    action: Action,
    route: MethodRouter<Arc<AdminState>>,
) -> MethodRouter<Arc<AdminState>> {
    route.route_layer(middleware::from_fn_with_state(
        state.clone(),
        move |s: State<Arc<AdminState>>, req: Request, next: Next| {
            guard::guard(s, action, req, next)
        },
    ))
}

async fn time_limit(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than admin.request_timeout ({limit:?}); retry, or check the gateway's load"),
        )
        .into_response(),
    }
}

/// The admin API routes, each behind the guard with its [`Action`].
pub fn router(state: Arc<AdminState>) -> Router {
    let s = &state;
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route(
            "/metrics",
            guarded(s, Action::ReadMetrics, get(handlers::metrics)),
        )
        .route(
            "/api/v1/status",
            guarded(s, Action::ReadStatus, get(handlers::status)),
        )
        .route(
            "/api/v1/devices",
            guarded(s, Action::ReadDevices, get(handlers::list_devices)).merge(guarded(
                s,
                Action::EnrollDevice,
                post(handlers::enroll_device),
            )),
        )
        .route(
            "/api/v1/devices/{id}",
            guarded(s, Action::ReadDevices, get(handlers::get_device)),
        )
        .route(
            "/api/v1/devices/{id}/quarantine",
            guarded(
                s,
                Action::QuarantineDevice,
                post(handlers::quarantine_device),
            ),
        )
        .route(
            "/api/v1/devices/{id}/reactivate",
            guarded(
                s,
                Action::ReactivateDevice,
                post(handlers::reactivate_device),
            ),
        )
        .route(
            "/api/v1/devices/{id}/revoke",
            guarded(s, Action::RevokeDevice, post(handlers::revoke_device)),
        )
        .route(
            "/api/v1/audit",
            guarded(s, Action::ReadAudit, get(handlers::recent_audit)),
        )
        .route(
            "/api/v1/audit/verify",
            guarded(s, Action::ReadAudit, get(handlers::verify_audit)),
        )
        .route(
            "/api/v1/tokens",
            guarded(s, Action::ListTokens, get(handlers::list_tokens)).merge(guarded(
                s,
                Action::CreateToken,
                post(handlers::create_token),
            )),
        )
        .route(
            "/api/v1/tokens/{id}",
            guarded(s, Action::RevokeToken, delete(handlers::revoke_token)),
        )
        .route(
            "/api/v1/access/review",
            guarded(s, Action::ReviewAccess, get(handlers::review_access)),
        )
        .route(
            "/api/v1/ota/status",
            guarded(s, Action::ReadOtaStatus, get(handlers::ota_status)),
        )
        .route(
            "/api/v1/ota/devices/{id}/retry",
            guarded(s, Action::RetryOtaUpdate, post(handlers::retry_ota_update)),
        )
        // Ward console (crate::console): the page without a token, its two
        // extra read routes behind the guard.
        .merge(super::console_api::page_router())
        .route(
            "/api/v1/readings",
            guarded(s, Action::ReadDevices, get(super::console_api::readings)),
        )
        .route(
            "/api/v1/session",
            guarded(s, Action::ReadStatus, get(super::console_api::session)),
        )
        // Anomaly alerts (handlers in super::alerts_api).
        .route(
            "/api/v1/alerts",
            guarded(s, Action::ReadAlerts, get(super::alerts_api::list)),
        )
        .route(
            "/api/v1/alerts/{id}/acknowledge",
            guarded(
                s,
                Action::AcknowledgeAlert,
                post(super::alerts_api::acknowledge),
            ),
        )
        .route(
            "/api/v1/alerts/{id}/release",
            guarded(s, Action::ReleaseDevice, post(super::alerts_api::release)),
        )
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            state.config.max_concurrent_requests,
        ))
        .with_state(state)
}
