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
use crate::registry::DeviceState;

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

/// Every guarded route: path, the [`Action`] it is (and so the least role
/// that may call it, [`Action::min_role`]), and its handler. One table, so
/// that an auditor reads the whole route-to-action map in one place.
fn guarded_routes() -> Vec<(&'static str, Action, MethodRouter<Arc<AdminState>>)> {
    use super::{alerts_api as alerts, console_api as console, handlers as h};
    use Action as A;
    vec![
        ("/metrics", A::ReadMetrics, get(h::metrics)),
        ("/api/v1/status", A::ReadStatus, get(h::status)),
        ("/api/v1/devices", A::ReadDevices, get(h::list_devices)),
        ("/api/v1/devices", A::EnrollDevice, post(h::enroll_device)),
        ("/api/v1/devices/{id}", A::ReadDevices, get(h::get_device)),
        (
            "/api/v1/devices/{id}/quarantine",
            A::QuarantineDevice,
            h::set_state(DeviceState::Quarantined),
        ),
        (
            "/api/v1/devices/{id}/reactivate",
            A::ReactivateDevice,
            h::set_state(DeviceState::Active),
        ),
        (
            "/api/v1/devices/{id}/revoke",
            A::RevokeDevice,
            h::set_state(DeviceState::Revoked),
        ),
        ("/api/v1/audit", A::ReadAudit, get(h::recent_audit)),
        ("/api/v1/audit/verify", A::ReadAudit, get(h::verify_audit)),
        ("/api/v1/tokens", A::ListTokens, get(h::list_tokens)),
        ("/api/v1/tokens", A::CreateToken, post(h::create_token)),
        (
            "/api/v1/tokens/{id}",
            A::RevokeToken,
            delete(h::revoke_token),
        ),
        (
            "/api/v1/access/review",
            A::ReviewAccess,
            get(h::review_access),
        ),
        ("/api/v1/ota/status", A::ReadOtaStatus, get(h::ota_status)),
        (
            "/api/v1/ota/devices/{id}/retry",
            A::RetryOtaUpdate,
            post(h::retry_ota_update),
        ),
        // The ward console's two reads beyond the rest of the API.
        ("/api/v1/readings", A::ReadDevices, get(console::readings)),
        ("/api/v1/session", A::ReadStatus, get(console::session)),
        // Anomaly alerts.
        ("/api/v1/alerts", A::ReadAlerts, get(alerts::list)),
        (
            "/api/v1/alerts/{id}/acknowledge",
            A::AcknowledgeAlert,
            post(alerts::acknowledge),
        ),
        (
            "/api/v1/alerts/{id}/release",
            A::ReleaseDevice,
            post(alerts::release),
        ),
    ]
}

/// The admin API routes, each behind the guard with its [`Action`]; the
/// health check and the console's page and files need no token.
pub fn router(state: Arc<AdminState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(handlers::healthz))
        .merge(super::console_api::page_router());
    // Two methods on one path (GET and POST /api/v1/devices) are merged by
    // axum into one route, each with its own guard.
    for (path, action, handler) in guarded_routes() {
        router = router.route(path, guarded(&state, action, handler));
    }
    router
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            state.config.max_concurrent_requests,
        ))
        .with_state(state)
}
