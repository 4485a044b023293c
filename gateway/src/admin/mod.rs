//! The admin HTTPS API: registry, audit and status for people, with bearer
//! tokens stored as hashes, least-privilege roles, TOTP for mutating calls and
//! a loudly audited break-glass token.
//!
//! | part | module |
//! | --- | --- |
//! | `[admin]` settings and their validation | [`config`] |
//! | roles, ordered by privilege | [`role`] |
//! | route -> minimum role table, refusal reasons | [`policy`] |
//! | token store: hashes, expiry, last use, break-glass, review | [`token`] |
//! | RFC 6238 codes and replay protection | [`totp`] |
//! | TOTP secrets sealed at rest (key outside the database) | [`vault`] |
//! | injectable clock | [`clock`] |
//! | audited token operations (CLI and API), break-glass | [`access`] |
//! | the guard: token, role, TOTP, break-glass, refusal audit | [`auth`] |
//! | HTTPS server, routes, limits, metrics families | [`server`] |
//! | JSON error bodies | [`error`] |
//!
//! Routes (all JSON; errors are `{"error": {"code", "message"}}`), with the
//! minimum role from [`policy::Action::min_role`]; mutating calls made with a
//! TOTP-bound token also need the `X-Wardgate-TOTP` header:
//!
//! | route | role |
//! | --- | --- |
//! | `GET /healthz` | none |
//! | `GET /metrics`, `GET /api/v1/status` | viewer |
//! | `GET /api/v1/devices`, `GET /api/v1/devices/{id}` | viewer |
//! | `GET /api/v1/audit?limit=N`, `GET /api/v1/audit/verify` | viewer |
//! | `POST /api/v1/devices/{id}/quarantine`, `.../reactivate` | operator |
//! | `POST /api/v1/devices`, `POST /api/v1/devices/{id}/revoke` | admin |
//! | `GET /api/v1/tokens`, `POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` | admin |
//! | `GET /api/v1/access/review` | admin |
//!
//! 401 for a missing, malformed, unknown, wrong, revoked or expired token
//! and for a missing, wrong or reused TOTP code; 403 for a role below the
//! route's minimum. Every refusal is a `admin.refused` audit row and a
//! `wardgate_admin_refusals_total{reason}` count, and changes nothing else.

pub mod access;
mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod error;
pub mod policy;
pub mod role;
pub mod server;
pub mod token;
pub mod totp;
pub mod vault;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::AdminConfig;
pub use policy::{Action, Refusal};
pub use role::Role;
pub use server::{load_tls, router, start, AdminMetrics, AdminServer, AdminState};
pub use token::{
    BearerToken, IssuedToken, NewToken, ReviewEntry, ReviewFlag, TokenId, TokenName, TokenRecord,
    TokenStore,
};

/// What went wrong in the admin component.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A configuration field is out of range or inconsistent.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
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
    /// A token id is not 16 lowercase hex digits.
    #[error("`{0}` is not a token id (16 lowercase hex digits); see `gateway access token list`")]
    InvalidTokenId(String),
    /// A token name has characters outside the allowed set.
    #[error("`{0}` is not a token name: use 1-64 characters from A-Z a-z 0-9 . _ @ -")]
    InvalidTokenName(String),
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
    /// The audit row could not be written (the operation was undone).
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The TOTP sealing key is missing, malformed or does not fit.
    #[error("admin TOTP key: {source}{advice}")]
    TotpKey {
        /// What is wrong with the key or the sealed secret.
        #[source]
        source: wardgate_tls::SealError,
        /// What to do, beyond what `source` says (may be empty).
        advice: String,
    },
    /// A stored TOTP secret is unusable.
    #[error(transparent)]
    Totp(#[from] totp::TotpFormatError),
}
