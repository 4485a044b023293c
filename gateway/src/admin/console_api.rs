//! The console's routes (registered in [`super::routes`]): its page and
//! files from [`crate::console::assets`], without a token (they hold no
//! data), and the two read routes the page needs beyond the rest of the
//! admin API, both behind the same guard:
//!
//! | route | action (role) | what |
//! | --- | --- | --- |
//! | `GET /api/v1/readings?last=N` | `read_devices` (viewer) | every device's newest N readings (1..=60, default 20) and live sessions, in one call for the whole ward |
//! | `GET /api/v1/session` | `read_status` (viewer) | who the presented token is and what its role may do, so the page shows only the buttons that will work |
//!
//! What a role may do is read from [`Action::min_role`] and
//! [`Action::is_mutating`], never restated here.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use axum::{Extension, Json};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::guard::Caller;
use super::state::AdminState;
use crate::access::policy::Action;
use crate::console::assets;
use crate::console::recent::SAMPLES_PER_DEVICE;

/// `GET /console` (the page) and `GET /console/{file}` (its assets), for
/// any state type: these routes read no state.
pub fn page_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    async fn page() -> Response {
        assets::page()
    }
    async fn file(Path(name): Path<String>) -> Response {
        assets::file(&name).unwrap_or_else(|| {
            ApiError::not_found(format!("the console has no file `{name}`; open /console"))
                .into_response()
        })
    }
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/{file}", get(file))
}

/// Readings per device when the query names none.
pub const DEFAULT_LAST: usize = 20;

/// Query of `GET /api/v1/readings`.
#[derive(Debug, Deserialize)]
pub struct ReadingsQuery {
    last: Option<usize>,
}

/// `GET /api/v1/readings?last=N`.
///
/// # Errors
/// 400 when `last` is 0 or above [`SAMPLES_PER_DEVICE`].
pub async fn readings(
    State(state): State<Arc<AdminState>>,
    Query(q): Query<ReadingsQuery>,
) -> Result<Json<Value>, ApiError> {
    let last = q.last.unwrap_or(DEFAULT_LAST);
    if last == 0 || last > SAMPLES_PER_DEVICE {
        return Err(ApiError::bad_request(format!(
            "`last` must be between 1 and {SAMPLES_PER_DEVICE} (readings kept per device)"
        )));
    }
    let devices: BTreeMap<_, _> = state.recent.snapshot(last).into_iter().collect();
    Ok(Json(json!({
        "now": Utc::now(),
        "samples_per_device": SAMPLES_PER_DEVICE,
        "devices": devices,
    })))
}

/// `GET /api/v1/session`: the caller's token (never its secret) and what it
/// may do.
pub async fn session(Extension(caller): Extension<Caller>) -> Json<Value> {
    let role = caller.token.role;
    let may = |a: Action| role.allows(a.min_role());
    let code = |a: Action| may(a) && a.is_mutating() && caller.token.totp_bound;
    Json(json!({
        "token": {
            "id": caller.token.id,
            "name": caller.token.name,
            "role": role,
            "kind": caller.token.kind,
            "expires_at": caller.token.expires_at,
            "totp_bound": caller.token.totp_bound,
        },
        "may": {
            "quarantine": may(Action::QuarantineDevice),
            "reactivate": may(Action::ReactivateDevice),
            "revoke": may(Action::RevokeDevice),
            "review_access": may(Action::ReviewAccess),
        },
        "needs_totp": {
            "quarantine": code(Action::QuarantineDevice),
            "reactivate": code(Action::ReactivateDevice),
            "revoke": code(Action::RevokeDevice),
        },
    }))
}
