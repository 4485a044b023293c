//! `ota-server token`: prints a new random token and the SHA-256 to put in
//! the configuration. Only the hash is ever stored.

/// A new token and its hash.
#[must_use]
pub fn run() -> (String, String) {
    crate::auth::new_token()
}
