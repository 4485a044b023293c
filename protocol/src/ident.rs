//! The one charset rule for identifiers that end up in topics, URLs and
//! database keys: [`crate::DeviceId`] and [`crate::GatewayId`] both use it,
//! so a name one side accepts is never refused by the other.

/// Longest identifier accepted.
pub(crate) const MAX_LEN: usize = 64;

/// Checks `input` against the rule: 1 to 64 ASCII characters from
/// `A-Z a-z 0-9 - _`, starting with a letter or digit. Returns the rule that
/// was broken, in words.
pub(crate) fn check(input: &str) -> Result<(), &'static str> {
    if input.is_empty() {
        return Err("empty");
    }
    if input.len() > MAX_LEN {
        return Err("longer than 64 characters");
    }
    if !input
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("contains a character outside A-Z a-z 0-9 - _");
    }
    if !input.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("does not start with a letter or digit");
    }
    Ok(())
}
