//! The second factor: RFC 6238 TOTP codes for mutating calls made with
//! operator and admin tokens. Replay refusal and lockout, which need the
//! token store, live beside it in [`crate::access::lockout`].
//!
//! | concept | module |
//! | --- | --- |
//! | secrets, codes, the step a code matches | [`code`] |
//! | secrets sealed at rest under a key kept outside the database | [`vault`] |

pub mod code;
pub mod vault;

pub use code::{matching_step, step_of, TotpCode, TotpFormatError, TotpSecret, STEP_SECONDS};
pub use vault::{TotpVault, VaultError, KEY_ENV, KEY_FILE};
