//! [`ConfigError`]: why a configuration was refused, naming the file,
//! variable or field at fault.

use std::path::{Path, PathBuf};

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown / mistyped fields.
    #[error("invalid config {origin}: {source}")]
    Parse {
        /// The file (or "environment").
        origin: String,
        /// The parser's error (its message names the field).
        #[source]
        source: toml::de::Error,
    },
    /// A `WARDGATE_*` variable does not name a field.
    #[error("environment variable {var}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// Why it was refused.
        reason: String,
    },
    /// A setting is invalid or insecure.
    #[error("refusing to start: `{field}` {reason}")]
    Invalid {
        /// Dotted field name, e.g. `edge.server_key`.
        field: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Refuse a private key file readable or writable by group or others.
///
/// # Errors
/// [`ConfigError::Invalid`] with the mode and the `chmod` to run, or when
/// the permissions cannot be read.
pub fn check_private(field: &str, path: &Path) -> Result<(), ConfigError> {
    // Fails closed: permissions that cannot be read are a refusal too.
    wardgate_tls::keyfile::check_private(path)
        .map_err(|e| ConfigError::invalid(field, e.to_string()))
}

/// Refuse an empty path or one that is not an existing file; `what` says
/// what the field should name.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the field and what to set it to.
pub fn require_file(field: &str, path: &Path, what: &str) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::invalid(
            field,
            format!("is missing: set it to {what}"),
        ));
    }
    if !path.is_file() {
        return Err(ConfigError::invalid(
            field,
            format!(
                "{} does not exist or is not a file: set it to {what}",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Refuse `value` outside `range`, naming the field; `bounds` is the range
/// as the operator reads it (`"1s and 300s"`).
///
/// # Errors
/// [`ConfigError::Invalid`]: "must be between {bounds}".
pub fn within<T: PartialOrd>(
    field: &str,
    value: &T,
    range: std::ops::RangeInclusive<T>,
    bounds: &str,
) -> Result<(), ConfigError> {
    if range.contains(value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            field,
            format!("must be between {bounds}"),
        ))
    }
}
