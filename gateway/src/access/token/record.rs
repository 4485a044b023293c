//! What the store knows about a token (never its secret): role, kind,
//! expiry, timestamps and whether it is bound to TOTP; and what is handed
//! over, once, when a token is issued.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::bearer::BearerToken;
use super::name::{TokenId, TokenName};
use crate::access::role::Role;
use crate::access::totp::code::TotpSecret;

/// Ordinary tokens, or the time-limited emergency admin token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A token issued for a person or a system.
    Standard,
    /// An emergency admin token with a short expiry, audited on every use.
    BreakGlass,
}

impl TokenKind {
    /// The name stored in the `kind` column.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Standard => "standard",
            TokenKind::BreakGlass => "break_glass",
        }
    }

    /// The kind named by a stored `kind` column.
    #[must_use]
    pub fn from_column(s: &str) -> Option<Self> {
        match s {
            "standard" => Some(TokenKind::Standard),
            "break_glass" => Some(TokenKind::BreakGlass),
            _ => None,
        }
    }
}

/// A stored token, without its secret or TOTP secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenRecord {
    /// Public id.
    #[schema(value_type = String, pattern = "^[0-9a-f]{16}$")]
    pub id: TokenId,
    /// Holder label.
    #[schema(value_type = String)]
    pub name: TokenName,
    /// Granted role.
    pub role: Role,
    /// Standard or break-glass.
    pub kind: TokenKind,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last fully authorised use.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether mutating calls need a TOTP code.
    pub totp_bound: bool,
}

impl TokenRecord {
    /// Whether the token is past its expiry at `now`.
    #[must_use]
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Holder label.
    pub name: TokenName,
    /// Granted role.
    pub role: Role,
    /// Lifetime from now; `None` for no expiry.
    pub lifetime: Option<Duration>,
    /// Bind a fresh TOTP secret (operator and admin only).
    pub bind_totp: bool,
}

/// A freshly issued token: the only time its secret and TOTP secret are seen.
#[derive(Debug)]
pub struct IssuedToken {
    /// The stored record.
    pub record: TokenRecord,
    /// The bearer token to hand over.
    pub token: BearerToken,
    /// The TOTP secret to enrol in an authenticator app, if bound.
    pub totp: Option<TotpSecret>,
}
