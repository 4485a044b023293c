//! How a failed command is reported to the operator: the error and each of
//! its causes on one line, `outer: cause: cause`, with a cause left out
//! when the message before it already says it (errors that name their
//! source in their own message, such as a TOML parse error, would otherwise
//! be printed twice).

/// The error chain of `e` as one line, each cause once.
#[must_use]
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    let mut previous = out.clone();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !previous.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        previous = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("inner problem")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("outer failed")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("outer says: {0}")]
    struct Telling(#[source] Inner);

    #[test]
    fn causes_are_appended_once() {
        assert_eq!(
            describe(&anyhow::Error::new(Outer(Inner))),
            "outer failed: inner problem"
        );
        assert_eq!(
            describe(&anyhow::Error::new(Telling(Inner))),
            "outer says: inner problem"
        );
        assert_eq!(
            describe(&anyhow::Error::new(Outer(Inner)).context("gateway run")),
            "gateway run: outer failed: inner problem"
        );
    }
}
