//! Why a caller was refused before anything was done for it, in the terms
//! of access control: no usable token, a role too low for the action, or a
//! missing, wrong, reused or locked TOTP code. How a refusal is shown to an
//! HTTP caller (status, JSON code, message) is the HTTP layer's business
//! (`crate::admin::error`); [`Refusal::reason`] is the label every refusal is
//! audited and counted under.

use super::error::AccessError;
use super::role::Role;

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
    /// Label for the refusal metric and audit detail (finer than the error code the HTTP layer shows).
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
}

/// Why authentication did not produce a token record.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// The caller is refused (401/403 to the peer, audit row).
    #[error("{0}")]
    Refused(Refusal),
    /// The store failed (500 to the peer).
    #[error(transparent)]
    Store(#[from] AccessError),
}

impl From<Refusal> for AuthFailure {
    fn from(r: Refusal) -> Self {
        AuthFailure::Refused(r)
    }
}
