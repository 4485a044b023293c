//! Bearer tokens of the admin API, one module per concept (ids and names:
//! [`crate::access::name`]):
//!
//! | concept | module |
//! | --- | --- |
//! | the `wgt_<id>_<secret>` string, its generation and SHA-256 | [`bearer`] |
//! | what is stored (role, kind, expiry, timestamps) and what is issued | [`record`] |
//! | the table: issue, look up, list, revoke, last use | [`store`] |
//! | checking a presented token (constant-time hash, revoked, expired) | [`authenticate`] |

pub mod authenticate;
pub mod bearer;
pub mod record;
pub mod store;

/// Token ids and names live in [`crate::access::name`] (a leaf that the
/// error type and the TOTP vault use too); re-exported under their old path.
pub use crate::access::name;
pub use bearer::BearerToken;
pub use name::{NameError, TokenId, TokenName};
pub use record::{IssuedToken, NewToken, TokenKind, TokenRecord};
pub use store::TokenStore;
