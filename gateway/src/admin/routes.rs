//! The admin API's routes: each is mapped to an [`Action`] and put behind
//! the guard ([`super::guard`]), and the whole router gets its limits:
//! request body size (`admin.max_body_bytes`), time per request
//! (`admin.request_timeout`) and concurrent requests
//! (`admin.max_concurrent_requests`).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;

use super::error::ApiError;
use super::guard;
use super::handlers;
use super::route_table::{guarded_routes, DOCUMENT_PATH};
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

/// The admin API routes, each behind the guard with its [`Action`]; the
/// health check and the console's page and files need no token.
pub fn router(state: Arc<AdminState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(handlers::healthz))
        .route(DOCUMENT_PATH, get(super::openapi::serve))
        .merge(super::console_api::page_router());
    // Two methods on one path (GET and POST /api/v1/devices) are merged by
    // axum into one route, each with its own guard.
    for r in guarded_routes() {
        router = router.route(r.path, guarded(&state, r.action, r.handler));
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
