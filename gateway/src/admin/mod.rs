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
//! | injectable clock | [`clock`] |
//! | JSON error bodies | [`error`] |

pub mod clock;
pub mod config;
pub mod error;
pub mod policy;
pub mod role;
pub mod token;
pub mod totp;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::AdminConfig;
pub use policy::{Action, Refusal};
pub use role::Role;
pub use token::{
    BearerToken, IssuedToken, NewToken, ReviewEntry, ReviewFlag, TokenId, TokenName, TokenRecord,
    TokenStore,
};

/// What went wrong in the admin component.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A configuration field is out of range or inconsistent.
    #[error("invalid configuration `{field}`: {problem}")]
    Config {
        /// The field, as written in the TOML file.
        field: &'static str,
        /// What is wrong and what to set.
        problem: String,
    },
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
    /// The TLS certificate or key cannot be used.
    #[error("admin TLS file {path}: {problem}; check admin.tls_cert / admin.tls_key (PEM)")]
    Tls {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr} (admin.bind): {source}; pick a free port or stop the other process")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored TOTP secret is unusable.
    #[error(transparent)]
    Totp(#[from] totp::TotpFormatError),
}
