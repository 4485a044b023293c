//! Reading the configuration: one TOML file, then the `WARDGATE_*`
//! overrides of [`super::env`], then typing into [`Config`] (unknown and
//! mistyped fields are refused by name). Validation is separate
//! ([`Config::validate`]), so offline subcommands can read a file whose TLS
//! files do not exist yet.

use std::path::Path;

use serde::Deserialize;

use super::env;
use super::error::ConfigError;
use super::sections::Config;

impl Config {
    /// Read `path` and apply `WARDGATE_*` overrides from the process
    /// environment (not validated: see [`Config::validate`] and
    /// [`super::ValidConfig::load`]).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, variable or field at fault.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_with_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parse TOML text and apply the `WARDGATE_*` pairs from `env`
    /// (not validated).
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Env`].
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
            origin: origin.to_owned(),
            source,
        })?;
        env::apply(&mut table, env)?;
        Config::deserialize(toml::Value::Table(table)).map_err(|source| ConfigError::Parse {
            origin: format!("{origin} (with WARDGATE_* overrides)"),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    #[test]
    fn defaults_parse_and_env_overrides_apply() {
        let c = Config::from_toml_with_env(
            "[edge]\nmax_connections = 10\n",
            "test",
            [
                ("WARDGATE_EDGE__RATE_BURST".to_owned(), "7".to_owned()),
                (
                    "WARDGATE_STORAGE__DATA_DIR".to_owned(),
                    "/tmp/x y".to_owned(),
                ),
                ("WARDGATE_EDGE__IDLE_TIMEOUT".to_owned(), "30s".to_owned()),
                ("OTHER".to_owned(), "1".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(c.edge.max_connections, 10);
        assert_eq!(c.edge.rate_burst, 7);
        assert_eq!(c.edge.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/x y"));
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Config::from_toml_with_env("[edge]\nlisten_port = 1\n", "test", []).unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
    }
}
