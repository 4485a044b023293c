//! The outbox key from the environment takes precedence over the key file,
//! and no key file is written then. Its own test binary: it sets a process
//! environment variable.

use gateway::uplink::seal::{OutboxKey, KEY_ENV};

#[test]
fn key_from_environment_wins_and_no_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.key");
    let text = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="; // bytes 1..=32
    std::env::set_var(KEY_ENV, text);
    let from_env = OutboxKey::load_or_create(&path).unwrap();
    assert!(
        !path.exists(),
        "no key file when the key comes from {KEY_ENV}"
    );
    let same = OutboxKey::from_base64(text, "test").unwrap();
    let (nonce, sealed) = from_env.seal(5, "pump-1", b"vitals").unwrap();
    assert_eq!(same.open(5, "pump-1", &nonce, &sealed).unwrap(), b"vitals");

    // A malformed variable is refused by name, not silently replaced.
    std::env::set_var(KEY_ENV, "too-short");
    let err = OutboxKey::load_or_create(&path).unwrap_err().to_string();
    assert!(err.contains(KEY_ENV), "{err}");
    assert!(!path.exists());
    std::env::remove_var(KEY_ENV);

    // Without it, a key file is created.
    OutboxKey::load_or_create(&path).unwrap();
    assert!(path.exists());
}
