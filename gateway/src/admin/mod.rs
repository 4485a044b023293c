//! The admin HTTPS API: registry, audit and status for people, behind the
//! access control of [`crate::access`] (bearer tokens stored as hashes,
//! least-privilege roles, TOTP for mutating calls, break-glass).
//!
//! This module is the HTTP layer only: it reads credentials from headers,
//! asks [`crate::access`] for a decision, and turns refusals into status
//! codes and JSON bodies.
//!
//! | part | module |
//! | --- | --- |
//! | HTTPS listener, TLS, connection limits, shutdown, wiring into a gateway | [`server`] |
//! | requests per client address: `429` with `Retry-After`, before the guard | [`peer_limit`] |
//! | the route table: each guarded route mapped to its [`Action`], and the routes needing no token | [`route_table`] |
//! | the router: the guard on each route, body/time/concurrency limits | [`routes`] |
//! | the guard: token, role, TOTP, break-glass use, refusal audit and metric | [`guard`] |
//! | reading the `Authorization` and `X-Wardgate-TOTP` headers | [`headers`] |
//! | handlers (registry, audit, status, tokens, review, OTA progress and retry) | `handlers` |
//! | the alert routes over the detector's store (list, acknowledge, release) | [`alerts_api`] |
//! | the console's read routes (`/api/v1/readings`, `/api/v1/session`) | [`console_api`] |
//! | JSON errors, refusal -> HTTP status, [`AdminError`] | [`error`] |
//! | `wardgate_admin_*` metric families | [`metrics`] |
//! | the OpenAPI document, `GET /api/v1/openapi.json` (no token) | [`openapi`] |
//! | state shared by guard and handlers | [`state`] |
//!
//! The `[admin]` settings live in [`crate::config::AdminConfig`] and are
//! validated with the rest of the configuration.
//!
//! Routes (all JSON; errors are `{"error": {"code", "message"}}`), with the
//! minimum role from [`Action::min_role`]; mutating calls made with a
//! TOTP-bound token also need the `X-Wardgate-TOTP` header:
//!
//! | route | role |
//! | --- | --- |
//! | `GET /healthz` | none |
//! | `GET /metrics`, `GET /api/v1/status` | viewer |
//! | `GET /api/v1/devices`, `GET /api/v1/devices/{id}` | viewer |
//! | `GET /api/v1/audit?limit=N`, `GET /api/v1/audit/verify` | viewer |
//! | `GET /api/v1/ota/status` (404 `ota_disabled` without `[ota]`) | viewer |
//! | `POST /api/v1/devices/{id}/quarantine`, `.../reactivate` | operator |
//! | `POST /api/v1/ota/devices/{id}/retry` (audited `ota.retry`) | operator |
//! | `POST /api/v1/devices`, `POST /api/v1/devices/{id}/revoke` | admin |
//! | `GET /api/v1/tokens`, `POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` | admin |
//! | `GET /api/v1/access/review` | admin |
//!
//! 401 for a missing, malformed, unknown, wrong, revoked or expired token
//! and for a missing, wrong or reused TOTP code; 403 for a role below the
//! route's minimum. Every refusal is a `admin.refused` audit row and a
//! `wardgate_admin_refusals_total{reason}` count, and changes nothing else.
//! Before all of that, a client address over its request limit gets 429
//! with `Retry-After` ([`peer_limit`]): counted as `reason="rate_limited"`,
//! never audited, so a flood costs no database write.
//!
//! The access-control names (`TokenStore`, `Role`, `Clock`, `totp`, ...) are
//! re-exported here for callers of the earlier layout; new code imports
//! them from [`crate::access`].

pub mod alerts_api;
pub mod console_api;
pub mod error;
pub mod guard;
mod handlers;
pub mod headers;
pub mod metrics;
pub mod openapi;
pub mod peer_limit;
pub mod route_table;
pub mod routes;
pub mod server;
pub mod state;

pub use error::{AdminError, ApiError};
pub use guard::Caller;
pub use headers::TOTP_HEADER;
pub use metrics::AdminMetrics;
pub use routes::router;
pub use server::{load_tls, start, AdminServer};
pub use state::AdminState;

pub use crate::access;
pub use crate::access::totp;
pub use crate::access::{
    Action, BearerToken, Clock, IssuedToken, ManualClock, NewToken, Refusal, ReviewEntry,
    ReviewFlag, Role, SystemClock, TokenId, TokenName, TokenRecord, TokenStore,
};
pub use crate::config::AdminConfig;
