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

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::guard::Caller;
use super::state::AdminState;
use crate::access::policy::Action;
use crate::access::role::Role;
use crate::access::token::record::TokenKind;
use crate::console::assets;
use crate::console::recent::{DeviceActivity, SAMPLES_PER_DEVICE};

/// `GET /console` (the page) and `GET /console/{file}` (its assets), for
/// any state type: these routes read no state.
pub fn page_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page_slash))
        .route("/console/{file}", get(file))
}

/// `GET /console` and `GET /console/`: the console's page.
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 200, description = "The ward console", content_type = "text/html; charset=utf-8", body = String)))]
pub(crate) async fn page() -> Response {
    assets::page()
}

/// `GET /console/` (the same page as `/console`).
#[utoipa::path(get, path = "/console/", tag = "console",
    responses((status = 200, description = "The ward console", content_type = "text/html; charset=utf-8", body = String)))]
pub(crate) async fn page_slash() -> Response {
    assets::page()
}

/// The `{file}` of `GET /console/{file}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ConsoleFile {
    /// One of the console's files.
    #[param(example = "console.js")]
    #[allow(dead_code)]
    file: String,
}

/// `GET /console/{file}`: the page's scripts and styles.
#[utoipa::path(get, path = "/console/{file}", tag = "console", params(ConsoleFile),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript; charset=utf-8"), (String = "text/css; charset=utf-8"))),
        (status = 404, description = "The console has no such file", body = ErrorBody)))]
pub(crate) async fn file(Path(name): Path<String>) -> Response {
    assets::file(&name).unwrap_or_else(|| {
        ApiError::not_found(format!("the console has no file `{name}`; open /console"))
            .into_response()
    })
}

/// Readings per device when the query names none.
pub const DEFAULT_LAST: usize = 20;

/// Query of `GET /api/v1/readings`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadingsQuery {
    /// Readings per device: 1 to 60, default 20.
    #[param(minimum = 1, maximum = 60)]
    last: Option<usize>,
}

/// Body of `GET /api/v1/readings`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readings {
    /// The gateway's time.
    now: DateTime<Utc>,
    /// Readings kept per device.
    samples_per_device: usize,
    /// Every device seen, by id.
    devices: BTreeMap<String, DeviceActivity>,
}

/// `GET /api/v1/readings?last=N`.
///
/// # Errors
/// 400 when `last` is 0 or above [`SAMPLES_PER_DEVICE`], or not a number.
#[utoipa::path(get, path = "/api/v1/readings", tag = "console", security(("bearer" = [])), params(ReadingsQuery),
    responses(
        (status = 200, description = "Every device's newest readings and sessions", body = Readings),
        (status = 400, description = "`last` out of range or not a number", body = ErrorBody)))]
pub async fn readings(
    State(state): State<Arc<AdminState>>,
    q: Result<Query<ReadingsQuery>, QueryRejection>,
) -> Result<Json<Readings>, ApiError> {
    let Query(q) = q?;
    let last = q.last.unwrap_or(DEFAULT_LAST);
    if last == 0 || last > SAMPLES_PER_DEVICE {
        return Err(ApiError::bad_request(format!(
            "`last` must be between 1 and {SAMPLES_PER_DEVICE} (readings kept per device)"
        )));
    }
    let devices: BTreeMap<_, _> = state
        .recent
        .snapshot(last)
        .into_iter()
        .map(|(id, activity)| (id.to_string(), activity))
        .collect();
    Ok(Json(Readings {
        now: Utc::now(),
        samples_per_device: SAMPLES_PER_DEVICE,
        devices,
    }))
}

/// The presented token, as `GET /api/v1/session` shows it (never its
/// secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionToken {
    #[schema(value_type = String)]
    id: crate::access::name::TokenId,
    #[schema(value_type = String)]
    name: crate::access::name::TokenName,
    role: Role,
    kind: TokenKind,
    expires_at: Option<DateTime<Utc>>,
    totp_bound: bool,
}

/// Whether the token's role allows each console action.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionMay {
    quarantine: bool,
    reactivate: bool,
    revoke: bool,
    review_access: bool,
}

/// Whether each console action also needs a TOTP code from this token.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionNeedsTotp {
    quarantine: bool,
    reactivate: bool,
    revoke: bool,
}

/// Body of `GET /api/v1/session`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    token: SessionToken,
    may: SessionMay,
    needs_totp: SessionNeedsTotp,
}

/// `GET /api/v1/session`: the caller's token (never its secret) and what it
/// may do.
#[utoipa::path(get, path = "/api/v1/session", tag = "console", security(("bearer" = [])),
    responses((status = 200, description = "Who the token is and what it may do", body = Session)))]
pub async fn session(Extension(caller): Extension<Caller>) -> Json<Session> {
    let role = caller.token.role;
    let may = |a: Action| role.allows(a.min_role());
    let code = |a: Action| may(a) && a.is_mutating() && caller.token.totp_bound;
    Json(Session {
        token: SessionToken {
            id: caller.token.id.clone(),
            name: caller.token.name.clone(),
            role,
            kind: caller.token.kind,
            expires_at: caller.token.expires_at,
            totp_bound: caller.token.totp_bound,
        },
        may: SessionMay {
            quarantine: may(Action::QuarantineDevice),
            reactivate: may(Action::ReactivateDevice),
            revoke: may(Action::RevokeDevice),
            review_access: may(Action::ReviewAccess),
        },
        needs_totp: SessionNeedsTotp {
            quarantine: code(Action::QuarantineDevice),
            reactivate: code(Action::ReactivateDevice),
            revoke: code(Action::RevokeDevice),
        },
    })
}
