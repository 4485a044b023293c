//! The table of the admin API's routes: which [`Action`] each guarded
//! route is, and which routes need no token. A leaf, so that the router
//! ([`super::routes`]) and the OpenAPI document (`super::openapi`) both
//! read the one table without importing each other.

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};

use super::state::AdminState;
use crate::access::policy::Action;

/// Where the API's OpenAPI document is served, without a token (it
/// describes routes; it holds no secrets).
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// One guarded route: method, path, the [`Action`] it is (and so the least
/// role that may call it, [`Action::min_role`], and whether it needs a TOTP
/// code from a bound token, [`Action::is_mutating`]), and its handler.
pub(crate) struct GuardedRoute {
    /// HTTP method.
    pub method: Method,
    /// Path in axum's syntax (`{id}`), which is also OpenAPI's.
    pub path: &'static str,
    /// What the guard authorises.
    pub action: Action,
    pub(crate) handler: MethodRouter<Arc<AdminState>>,
}

fn route<H, T>(method: Method, path: &'static str, action: Action, handler: H) -> GuardedRoute
where
    H: Handler<T, Arc<AdminState>>,
    T: 'static,
{
    // The table below names only GET, POST and DELETE, which axum routes;
    // anything else is a mistake in this file, caught by its unit tests.
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|e| panic!("guarded_routes names {method}, which axum cannot route: {e}"));
    GuardedRoute {
        method,
        path,
        action,
        handler: on(filter, handler),
    }
}

/// Every guarded route. One table, so that an auditor reads the whole
/// route-to-action map in one place; the OpenAPI document is checked
/// against it (`super::openapi`).
pub(crate) fn guarded_routes() -> Vec<GuardedRoute> {
    use super::{alerts_api as alerts, console_api as console, handlers as h};
    use Action as A;
    let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
    vec![
        route(get.clone(), "/metrics", A::ReadMetrics, h::metrics),
        route(get.clone(), "/api/v1/status", A::ReadStatus, h::status),
        route(
            get.clone(),
            "/api/v1/devices",
            A::ReadDevices,
            h::list_devices,
        ),
        route(
            post.clone(),
            "/api/v1/devices",
            A::EnrollDevice,
            h::enroll_device,
        ),
        route(
            get.clone(),
            "/api/v1/devices/{id}",
            A::ReadDevices,
            h::get_device,
        ),
        route(
            post.clone(),
            "/api/v1/devices/{id}/quarantine",
            A::QuarantineDevice,
            h::quarantine,
        ),
        route(
            post.clone(),
            "/api/v1/devices/{id}/reactivate",
            A::ReactivateDevice,
            h::reactivate,
        ),
        route(
            post.clone(),
            "/api/v1/devices/{id}/revoke",
            A::RevokeDevice,
            h::revoke,
        ),
        route(get.clone(), "/api/v1/audit", A::ReadAudit, h::recent_audit),
        route(
            get.clone(),
            "/api/v1/audit/verify",
            A::ReadAudit,
            h::verify_audit,
        ),
        route(get.clone(), "/api/v1/tokens", A::ListTokens, h::list_tokens),
        route(
            post.clone(),
            "/api/v1/tokens",
            A::CreateToken,
            h::create_token,
        ),
        route(
            delete,
            "/api/v1/tokens/{id}",
            A::RevokeToken,
            h::revoke_token,
        ),
        route(
            get.clone(),
            "/api/v1/access/review",
            A::ReviewAccess,
            h::review_access,
        ),
        route(
            get.clone(),
            "/api/v1/ota/status",
            A::ReadOtaStatus,
            h::ota_status,
        ),
        route(
            post.clone(),
            "/api/v1/ota/devices/{id}/retry",
            A::RetryOtaUpdate,
            h::retry_ota_update,
        ),
        // The ward console's two reads beyond the rest of the API.
        route(
            get.clone(),
            "/api/v1/readings",
            A::ReadDevices,
            console::readings,
        ),
        route(
            get.clone(),
            "/api/v1/session",
            A::ReadStatus,
            console::session,
        ),
        // Anomaly alerts.
        route(get, "/api/v1/alerts", A::ReadAlerts, alerts::list),
        route(
            post.clone(),
            "/api/v1/alerts/{id}/acknowledge",
            A::AcknowledgeAlert,
            alerts::acknowledge,
        ),
        route(
            post,
            "/api/v1/alerts/{id}/release",
            A::ReleaseDevice,
            alerts::release,
        ),
    ]
}

/// The routes served without a token, as (method, path): the health
/// check, this API's OpenAPI document (it holds no secrets), and the
/// console's page and files (they hold no data).
#[cfg(test)]
pub(crate) const UNGUARDED_ROUTES: [(&str, &str); 5] = [
    ("GET", "/healthz"),
    ("GET", DOCUMENT_PATH),
    ("GET", "/console"),
    ("GET", "/console/"),
    ("GET", "/console/{file}"),
];
