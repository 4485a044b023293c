//! Least privilege for the admin API, in one place.
//!
//! Every route names an [`Action`]; [`Action::min_role`] is the single
//! route-to-role table and [`Action::is_mutating`] says which calls need a
//! TOTP code from a bound token. The guard in [`crate::admin::auth`] is the
//! only code that enforces them. A refused call becomes a [`Refusal`]: its
//! HTTP status, stable error code, operator message and metric label.

use axum::http::StatusCode;
use serde::Serialize;

use super::role::Role;

/// The request header that carries the TOTP code for mutating calls.
pub const TOTP_HEADER: &str = "x-wardgate-totp";

/// Something a caller can ask the admin API to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `GET /api/v1/status`
    ReadStatus,
    /// `GET /metrics`
    ReadMetrics,
    /// `GET /api/v1/devices`, `GET /api/v1/devices/{id}`
    ReadDevices,
    /// `GET /api/v1/audit`, `GET /api/v1/audit/verify`
    ReadAudit,
    /// `POST /api/v1/devices/{id}/quarantine`
    QuarantineDevice,
    /// `POST /api/v1/devices/{id}/reactivate`
    ReactivateDevice,
    /// `POST /api/v1/devices`
    EnrollDevice,
    /// `POST /api/v1/devices/{id}/revoke`
    RevokeDevice,
    /// `GET /api/v1/tokens`
    ListTokens,
    /// `GET /api/v1/access/review`
    ReviewAccess,
    /// `POST /api/v1/tokens`
    CreateToken,
    /// `DELETE /api/v1/tokens/{id}`
    RevokeToken,
}

impl Action {
    /// Every action, for tests and documentation.
    pub const ALL: [Action; 12] = [
        Action::ReadStatus,
        Action::ReadMetrics,
        Action::ReadDevices,
        Action::ReadAudit,
        Action::QuarantineDevice,
        Action::ReactivateDevice,
        Action::EnrollDevice,
        Action::RevokeDevice,
        Action::ListTokens,
        Action::ReviewAccess,
        Action::CreateToken,
        Action::RevokeToken,
    ];

    /// The least privileged role allowed to perform this action.
    #[must_use]
    pub fn min_role(self) -> Role {
        match self {
            Action::ReadStatus | Action::ReadMetrics | Action::ReadDevices | Action::ReadAudit => {
                Role::Viewer
            }
            Action::QuarantineDevice | Action::ReactivateDevice => Role::Operator,
            Action::EnrollDevice
            | Action::RevokeDevice
            | Action::ListTokens
            | Action::ReviewAccess
            | Action::CreateToken
            | Action::RevokeToken => Role::Admin,
        }
    }

    /// Whether the action changes state (and so needs a TOTP code from a
    /// TOTP-bound token).
    #[must_use]
    pub fn is_mutating(self) -> bool {
        !matches!(
            self,
            Action::ReadStatus
                | Action::ReadMetrics
                | Action::ReadDevices
                | Action::ReadAudit
                | Action::ListTokens
                | Action::ReviewAccess
        )
    }

    /// The name used in audit rows and metric labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadStatus => "read_status",
            Action::ReadMetrics => "read_metrics",
            Action::ReadDevices => "read_devices",
            Action::ReadAudit => "read_audit",
            Action::QuarantineDevice => "quarantine_device",
            Action::ReactivateDevice => "reactivate_device",
            Action::EnrollDevice => "enroll_device",
            Action::RevokeDevice => "revoke_device",
            Action::ListTokens => "list_tokens",
            Action::ReviewAccess => "review_access",
            Action::CreateToken => "create_token",
            Action::RevokeToken => "revoke_token",
        }
    }
}

/// Why a call was refused before it reached its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    MissingToken,
    /// The header or token does not have the expected shape.
    #[error("malformed bearer token")]
    MalformedToken,
    /// No token with that id.
    #[error("unknown token")]
    UnknownToken,
    /// The id exists but the secret does not match.
    #[error("wrong token secret")]
    WrongSecret,
    /// The token was revoked.
    #[error("token revoked")]
    RevokedToken,
    /// The token is past its expiry.
    #[error("token expired")]
    ExpiredToken,
    /// The token's role is below the action's minimum.
    #[error("role {have} may not {action}; needs {need}")]
    Forbidden {
        /// The caller's role.
        have: Role,
        /// The role the action needs.
        need: Role,
        /// What was asked.
        action: &'static str,
    },
    /// A TOTP-bound token made a mutating call without a code.
    #[error("TOTP code required")]
    TotpRequired,
    /// The code is not six digits.
    #[error("malformed TOTP code")]
    TotpMalformed,
    /// The code does not match the token's secret now.
    #[error("wrong TOTP code")]
    TotpInvalid,
    /// The code's time step was already used.
    #[error("TOTP code already used")]
    TotpReused,
    /// Too many wrong codes in a row; TOTP calls are locked for a while.
    #[error("TOTP locked after repeated wrong codes")]
    TotpLocked,
}

impl Refusal {
    /// 401 for who-are-you failures, 403 for not-allowed.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// Stable error code in JSON bodies.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Refusal::MissingToken
            | Refusal::MalformedToken
            | Refusal::UnknownToken
            | Refusal::WrongSecret
            | Refusal::RevokedToken
            | Refusal::ExpiredToken => "unauthenticated",
            Refusal::Forbidden { .. } => "forbidden",
            Refusal::TotpRequired => "totp_required",
            Refusal::TotpMalformed | Refusal::TotpInvalid => "totp_invalid",
            Refusal::TotpReused => "totp_reused",
            Refusal::TotpLocked => "totp_locked",
        }
    }

    /// Label for the refusal metric and audit detail (finer than `code`).
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::MissingToken => "missing_token",
            Refusal::MalformedToken => "malformed_token",
            Refusal::UnknownToken => "unknown_token",
            Refusal::WrongSecret => "wrong_secret",
            Refusal::RevokedToken => "revoked_token",
            Refusal::ExpiredToken => "expired_token",
            Refusal::Forbidden { .. } => "insufficient_role",
            Refusal::TotpRequired => "totp_missing",
            Refusal::TotpMalformed => "totp_malformed",
            Refusal::TotpInvalid => "totp_invalid",
            Refusal::TotpReused => "totp_reused",
            Refusal::TotpLocked => "totp_locked",
        }
    }

    /// What the caller should do next. Authentication failures share one
    /// message so a prober learns nothing about which tokens exist.
    #[must_use]
    pub fn message(self) -> String {
        match self {
            Refusal::MissingToken
            | Refusal::MalformedToken
            | Refusal::UnknownToken
            | Refusal::WrongSecret
            | Refusal::RevokedToken
            | Refusal::ExpiredToken => {
                "send a valid, unexpired token as `Authorization: Bearer wgt_...`; \
                 an administrator can issue one with `gateway access token create`"
                    .to_owned()
            }
            Refusal::Forbidden { have, need, action } => format!(
                "a {have} token may not {action}; this needs a {need} token (ask an administrator)"
            ),
            Refusal::TotpRequired => format!(
                "this token is bound to TOTP: send the current 6-digit code in the `{}` header",
                TOTP_HEADER
            ),
            Refusal::TotpMalformed | Refusal::TotpInvalid => format!(
                "the `{}` code does not match; check the authenticator app and the gateway's clock",
                TOTP_HEADER
            ),
            Refusal::TotpReused => {
                "this TOTP code was already used; wait for the next code".to_owned()
            }
            Refusal::TotpLocked => format!(
                "too many wrong TOTP codes in a row: mutating calls with this token are locked for \
                 {} minutes; check the authenticator app and the gateway's clock, or ask an administrator",
                super::token::TOTP_LOCKOUT_SECONDS / 60
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_privilege_table() {
        use Action::*;
        for a in Action::ALL {
            let expected = match a {
                ReadStatus | ReadMetrics | ReadDevices | ReadAudit => Role::Viewer,
                QuarantineDevice | ReactivateDevice => Role::Operator,
                EnrollDevice | RevokeDevice | ListTokens | ReviewAccess | CreateToken
                | RevokeToken => Role::Admin,
            };
            assert_eq!(a.min_role(), expected, "{a:?}");
            // Every mutating action needs more than viewer.
            if a.is_mutating() {
                assert!(a.min_role() > Role::Viewer, "{a:?}");
            }
        }
    }

    #[test]
    fn refusal_statuses() {
        assert_eq!(Refusal::WrongSecret.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Refusal::TotpReused.status(), StatusCode::UNAUTHORIZED);
        let f = Refusal::Forbidden {
            have: Role::Viewer,
            need: Role::Admin,
            action: "revoke_device",
        };
        assert_eq!(f.status(), StatusCode::FORBIDDEN);
        assert_eq!(f.code(), "forbidden");
        assert!(f.message().contains("admin"));
        assert_eq!(
            Refusal::UnknownToken.message(),
            Refusal::WrongSecret.message()
        );
    }
}
