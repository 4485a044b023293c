//! Access control for the admin API: who may do what, and how that is
//! proven. Tokens kept only as hashes, least-privilege roles, a second factor
//! for mutating calls, and a loudly audited break-glass token.
//!
//! This module knows nothing about HTTP: it answers "is this token good for
//! this action?" with a record or a [`Refusal`], and the HTTP layer
//! ([`crate::admin`]) turns that into a status code and a JSON body. The CLI
//! (`gateway access ...`) uses the same operations on the same table.
//!
//! | control | module |
//! | --- | --- |
//! | roles, ordered by privilege | [`role`] |
//! | route (action) -> minimum role table, which actions mutate | [`policy`] |
//! | why a caller was refused, with its audit/metric label | [`refusal`] |
//! | token ids and names, the `wgt_` bearer string and its SHA-256 | [`name`], [`token::bearer`] |
//! | token store: issue, list, revoke, last use | [`token::store`] |
//! | checking a presented token: constant-time hash, revoked, expired | [`token::authenticate`] |
//! | RFC 6238 codes | [`totp::code`] |
//! | TOTP replay refusal and lockout after wrong codes | [`lockout`] |
//! | TOTP secrets sealed at rest (key outside the database) | [`totp::vault`] |
//! | break-glass tokens: short window, audited issue | [`break_glass`] |
//! | access review: stale, expired, revoked, break-glass | [`review`] |
//! | audited issue and revoke, shared by CLI and API | [`issuance`] |
//! | injectable clock (expiry, staleness, TOTP steps in tests) | [`clock`] |
//! | [`AccessError`] | [`error`] |

pub mod break_glass;
pub mod clock;
pub mod error;
pub mod issuance;
pub mod lockout;
pub mod name;
pub mod policy;
pub mod refusal;
pub mod review;
pub mod role;
pub mod token;
pub mod totp;

pub use break_glass::issue_break_glass;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::AccessError;
pub use issuance::{create_token, default_lifetime, revoke_token};
pub use lockout::{TOTP_LOCKOUT_SECONDS, TOTP_MAX_FAILURES};
pub use policy::Action;
pub use refusal::{AuthFailure, Refusal};
pub use review::{ReviewEntry, ReviewFlag};
pub use role::{Role, UnknownRole};
pub use token::{
    BearerToken, IssuedToken, NameError, NewToken, TokenId, TokenKind, TokenName, TokenRecord,
    TokenStore,
};
