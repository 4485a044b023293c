//! Who the audit log names for a command-line action: `cli:<login>`.

/// The audit actor for CLI actions: `cli:<login>` (`SUDO_USER`, else
/// `USER`), reduced to `A-Z a-z 0-9 . _ -` and 32 characters.
#[must_use]
pub fn cli_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(32)
        .collect();
    format!("cli:{user}")
}
