//! Errors of the HTTP layer: [`AdminError`] when the server cannot start,
//! and [`ApiError`], the JSON error a caller gets, with a stable `code` for
//! scripts and an actionable `message` for people.
//!
//! Body shape: `{"error": {"code": "forbidden", "message": "..."}}`. This is
//! where an access-control [`Refusal`] becomes an HTTP status: 401 for
//! who-are-you failures, 403 for a role below the route's minimum.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::headers::TOTP_HEADER;
use crate::access::error::AccessError;
use crate::access::lockout::TOTP_LOCKOUT_SECONDS;
use crate::access::name::NameError;
use crate::access::refusal::Refusal;

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The TLS certificate or key cannot be used (the error names the field).
    #[error("admin TLS: {0}")]
    Tls(#[from] wardgate_tls::TlsError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr} (admin.bind): {source}; pick a free port or stop the other process")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The token store (database or TOTP sealing key) cannot be opened.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The anomaly alert store cannot be opened.
    #[error("admin API cannot open the anomaly alert store")]
    Alerts(#[source] crate::anomaly::StoreError),
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What to do next.
    pub message: String,
}

/// The body of every error answer, as the OpenAPI document names it.
#[derive(Serialize, ToSchema)]
#[schema(as = ErrorBody)]
pub(crate) struct Body<'a> {
    error: Inner<'a>,
}

/// Schema name of the error body in the OpenAPI document.
pub(crate) type ErrorBody = Body<'static>;

/// The `error` object: a stable code for scripts, advice for people.
#[derive(Serialize, ToSchema)]
pub(crate) struct Inner<'a> {
    /// Stable machine-readable code (`unauthenticated`, `forbidden`,
    /// `totp_required`, `invalid_request`, `not_found`, ...).
    #[schema(example = "forbidden")]
    code: &'a str,
    /// What to do next.
    message: &'a str,
}

impl ApiError {
    /// A new error.
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_request`.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    #[must_use]
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 `conflict`.
    #[must_use]
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500 `internal`: the detail goes to the log, not to the caller.
    #[must_use]
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "admin API internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the gateway hit an internal error; see its log for details",
        )
    }
}

/// 401 for who-are-you failures, 403 for not-allowed.
#[must_use]
pub fn refusal_status(r: Refusal) -> StatusCode {
    match r {
        Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    }
}

/// Stable error code of a refusal in JSON bodies.
#[must_use]
pub fn refusal_code(r: Refusal) -> &'static str {
    refusal_answer(r).0
}

/// What the refused caller should do next.
#[must_use]
pub fn refusal_message(r: Refusal) -> String {
    refusal_answer(r).1
}

/// The code and the advice of a refusal, side by side. Authentication
/// failures share one of each, so a prober learns nothing about which
/// tokens exist.
fn refusal_answer(r: Refusal) -> (&'static str, String) {
    match r {
        Refusal::MissingToken
        | Refusal::MalformedToken
        | Refusal::UnknownToken
        | Refusal::WrongSecret
        | Refusal::RevokedToken
        | Refusal::ExpiredToken => (
            "unauthenticated",
            "send a valid, unexpired token as `Authorization: Bearer wgt_...`; \
             an administrator can issue one with `gateway access token create`"
                .to_owned(),
        ),
        Refusal::Forbidden { have, need, action } => (
            "forbidden",
            format!(
                "a {have} token may not {action}; this needs a {need} token (ask an administrator)"
            ),
        ),
        Refusal::TotpRequired => (
            "totp_required",
            format!(
                "this token is bound to TOTP: send the current 6-digit code in the `{TOTP_HEADER}` header"
            ),
        ),
        Refusal::TotpMalformed | Refusal::TotpInvalid => (
            "totp_invalid",
            format!(
                "the `{TOTP_HEADER}` code does not match; check the authenticator app and the gateway's clock"
            ),
        ),
        Refusal::TotpReused => (
            "totp_reused",
            "this TOTP code was already used; wait for the next code".to_owned(),
        ),
        Refusal::TotpLocked => (
            "totp_locked",
            format!(
                "too many wrong TOTP codes in a row: mutating calls with this token are locked for \
                 {} minutes; check the authenticator app and the gateway's clock, or ask an administrator",
                TOTP_LOCKOUT_SECONDS / 60
            ),
        ),
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let (code, message) = refusal_answer(r);
        Self::new(refusal_status(r), code, message)
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Name(_)
            | AccessError::TotpForViewer
            | AccessError::InvalidLifetime
            | AccessError::BreakGlassWindow { .. } => Self::bad_request(e.to_string()),
            AccessError::UnknownToken(_) => Self::not_found(e.to_string()),
            AccessError::AlreadyRevoked(_) => Self::conflict(e.to_string()),
            other => Self::internal(&other),
        }
    }
}

/// A path segment axum could not read (for example bytes that are not
/// UTF-8 once percent-decoded): a JSON 400 like every other refusal, not
/// axum's plain-text answer.
impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::bad_request(format!("invalid path: {}", e.body_text()))
    }
}

/// A query string that does not parse into the route's parameters (for
/// example `limit=abc`): a JSON 400 naming the parameter.
impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(format!("invalid query: {}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::role::Role;

    #[test]
    fn refusal_statuses() {
        assert_eq!(
            refusal_status(Refusal::WrongSecret),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            refusal_status(Refusal::TotpReused),
            StatusCode::UNAUTHORIZED
        );
        let f = Refusal::Forbidden {
            have: Role::Viewer,
            need: Role::Admin,
            action: "revoke_device",
        };
        assert_eq!(refusal_status(f), StatusCode::FORBIDDEN);
        assert_eq!(refusal_code(f), "forbidden");
        assert!(refusal_message(f).contains("admin"));
        assert_eq!(
            refusal_message(Refusal::UnknownToken),
            refusal_message(Refusal::WrongSecret)
        );
    }
}
