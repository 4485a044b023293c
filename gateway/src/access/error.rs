//! [`AccessError`]: what can go wrong managing or checking access tokens,
//! said so that an operator knows the next command to run.

use super::name::{NameError, TokenId};
use super::totp::code::TotpFormatError;
use super::totp::vault::VaultError;

/// What went wrong in access control (token store, sealed TOTP secrets,
/// audited token operations). A *refused caller* is not an error: see
/// [`super::refusal::Refusal`].
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The gateway database could not be opened.
    #[error(transparent)]
    Open(#[from] crate::db::DbError),
    /// A query on the token table failed.
    #[error("admin token table: {0}; check the gateway database with `gateway access token list`")]
    Db(#[from] rusqlite::Error),
    /// A stored token row does not parse.
    #[error("token {id} has a corrupt `{what}` column; revoke it with `gateway access token revoke {id}` and issue a new one")]
    CorruptRow {
        /// The row id as stored.
        id: String,
        /// Which column.
        what: String,
    },
    /// A token id or name does not parse.
    #[error(transparent)]
    Name(#[from] NameError),
    /// No token with that id.
    #[error("no token {0}; see `gateway access token list`")]
    UnknownToken(TokenId),
    /// The token is already revoked.
    #[error("token {0} is already revoked")]
    AlreadyRevoked(TokenId),
    /// A viewer token cannot be bound to TOTP (it never mutates).
    #[error("viewer tokens cannot make mutating calls, so TOTP does not apply; drop --totp or choose operator/admin")]
    TotpForViewer,
    /// A token lifetime must be positive.
    #[error("token lifetime must be positive")]
    InvalidLifetime,
    /// Break-glass window out of range.
    #[error("break-glass window of {minutes} minutes is outside 1..={max_minutes}; pick a shorter window (raise `admin.break_glass_max_minutes` only by policy)")]
    BreakGlassWindow {
        /// Asked for.
        minutes: u32,
        /// Allowed maximum.
        max_minutes: u32,
    },
    /// The audit row could not be written (the operation was undone).
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The TOTP sealing key is missing, malformed or does not fit, or a
    /// sealed secret does not open.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A stored TOTP secret is unusable.
    #[error(transparent)]
    Totp(#[from] TotpFormatError),
}
