//! `WARDGATE_<SECTION>__<FIELD>` environment overrides (note the double
//! underscore), applied to the parsed TOML table before it is typed, e.g.
//! `WARDGATE_EDGE__LISTEN=0.0.0.0:8883` or
//! `WARDGATE_STORAGE__DATA_DIR=/srv/wardgate`. The value is read as a TOML
//! value when it parses as one (numbers, booleans, quoted strings, arrays)
//! and as a plain string otherwise. Variables without the double underscore
//! (`WARDGATE_LOG`, `WARDGATE_CONFIG`, key variables) are not overrides.

use super::error::ConfigError;

/// Prefix of every override variable.
pub const PREFIX: &str = "WARDGATE_";

/// Apply the `WARDGATE_<SECTION>__<FIELD>` pairs of `env` to `table`.
///
/// # Errors
/// [`ConfigError::Env`] for a variable with an empty section or field, or
/// whose section is not a table in the file.
pub fn apply(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((section, field)) = rest.split_once("__") else {
            continue;
        };
        if section.is_empty() || field.is_empty() {
            return Err(ConfigError::Env {
                var,
                reason: "expected WARDGATE_<SECTION>__<FIELD>".into(),
            });
        }
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let section_table = table
            .entry(section.to_ascii_lowercase())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = section_table.as_table_mut() else {
            return Err(ConfigError::Env {
                var,
                reason: "section is not a table in the config file".into(),
            });
        };
        section_table.insert(field.to_ascii_lowercase(), parsed);
    }
    Ok(())
}
