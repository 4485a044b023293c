//! The second factor: RFC 6238 TOTP codes for mutating calls made with
//! operator and admin tokens.
//!
//! | concept | module |
//! | --- | --- |
//! | secrets, codes, the step a code matches | [`code`] |
//! | replay refusal and lockout after repeated wrong codes | [`lockout`] |
//! | secrets sealed at rest under a key kept outside the database | [`vault`] |

pub mod code;
pub mod lockout;
pub mod vault;

pub use code::{matching_step, step_of, TotpCode, TotpFormatError, TotpSecret, STEP_SECONDS};
pub use lockout::{TOTP_LOCKOUT_SECONDS, TOTP_MAX_FAILURES};
pub use vault::{TotpVault, KEY_ENV, KEY_FILE};
