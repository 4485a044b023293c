//! `ota-server token`: prints a new random token and the SHA-256 to put in
//! the configuration. Only the hash is ever stored.

/// Runs `token` from the command line: prints the token for its holder and
/// the hash for the configuration.
pub fn execute() {
    let (token, hash) = run();
    println!("token (give to the holder, store nowhere else): {token}");
    println!("token_sha256 (put in the config):              {hash}");
}

/// A new token and its hash.
#[must_use]
pub fn run() -> (String, String) {
    crate::auth::new_token()
}
