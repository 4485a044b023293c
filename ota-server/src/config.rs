//! Server configuration: one TOML file, safe defaults, `WARDGATE_OTA_*`
//! environment overrides, and a check that refuses invalid or insecure
//! settings by naming the field.
//!
//! [`Config::load`] reads the file and applies the overrides; the result is
//! only usable after [`Config::validate`] returns a [`ValidConfig`], so the
//! server cannot start on a configuration nobody checked.
//!
//! Overrides follow the convention of every Wardgate binary: prefix
//! ([`ENV_PREFIX`], `WARDGATE_OTA_` here), then the field, with `__` between
//! a section and its field: `WARDGATE_OTA_LISTEN`, `WARDGATE_OTA_TLS__CERT`,
//! `WARDGATE_OTA_LIMITS__MAX_UPLOAD_BYTES`. The value is TOML when it parses
//! as TOML that fits the field, else a plain string. A `WARDGATE_OTA_*`
//! variable that names no field is refused by name, with the right spelling
//! when it resembles one, since it is almost always a typo.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use tuf_repo::ManufacturerName;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}; pass an existing file with --config")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or had unknown fields.
    #[error("config file {path} is not valid: {source}")]
    Parse {
        /// The path given.
        path: PathBuf,
        /// The parser's message (names the line and field).
        source: toml::de::Error,
    },
    /// A `WARDGATE_OTA_*` environment variable names no field or does not
    /// fit the field it names.
    #[error(
        "environment variable {var}: {reason}; see docs/ota-server.md, \"Environment overrides\""
    )]
    Env {
        /// The variable.
        var: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A field has an unacceptable value.
    #[error("config field `{field}` is invalid: {reason}")]
    Field {
        /// Dotted path of the field, e.g. `tls.cert`.
        field: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

fn env_err(var: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Env {
        var: var.into(),
        reason: reason.into(),
    }
}

/// Prefix of every environment override of this server's configuration.
pub const ENV_PREFIX: &str = "WARDGATE_OTA_";

/// Separator between a section and a field in an override's name.
const ENV_SECTION_SEP: &str = "__";

/// The config field path (`["tls", "cert"]`) a `WARDGATE_OTA_*` variable
/// names in `table`, or an error naming the variable (with the right
/// spelling when the variable looks like a known field).
fn env_field_path(var: &str, table: &toml::Table) -> Result<Vec<String>, ConfigError> {
    let rest = var.strip_prefix(ENV_PREFIX).unwrap_or(var);
    let path: Vec<String> = rest
        .split(ENV_SECTION_SEP)
        .map(str::to_ascii_lowercase)
        .collect();
    let mut here = table;
    for (i, key) in path.iter().enumerate() {
        let found = if key.is_empty() { None } else { here.get(key) };
        match found {
            Some(toml::Value::Table(t)) if i + 1 < path.len() => here = t,
            Some(toml::Value::Table(_)) => {
                return Err(env_err(
                    var,
                    format!(
                        "names the whole section [{}]; set its fields one by one, e.g. {}",
                        path.join("."),
                        first_field_var(&path, table)
                    ),
                ))
            }
            Some(_) if i + 1 == path.len() => return Ok(path),
            _ => {
                let hint = suggest(rest, table).map_or_else(
                    || format!("write {ENV_PREFIX}<FIELD> for a top-level field and {ENV_PREFIX}<SECTION>__<FIELD> for a field of a section"),
                    |(field, var)| format!("the variable for `{field}` is {var}"),
                );
                return Err(env_err(var, format!("names no config field; {hint}")));
            }
        }
    }
    Err(env_err(var, "names no config field"))
}

/// Every leaf field of `table` as (dotted path, variable name).
fn env_names(table: &toml::Table, prefix: &[&str], out: &mut Vec<(Vec<String>, String)>) {
    for (k, v) in table {
        let mut path: Vec<&str> = prefix.to_vec();
        path.push(k);
        if let toml::Value::Table(t) = v {
            env_names(t, &path, out);
        } else {
            let name = format!(
                "{ENV_PREFIX}{}",
                path.join(ENV_SECTION_SEP).to_ascii_uppercase()
            );
            out.push((path.iter().map(|s| (*s).to_owned()).collect(), name));
        }
    }
}

/// The correct spelling of a mistyped variable: the old
/// `WARDGATE_OTA_TLS_CERT` form, or a field name given without its section.
/// Returns (dotted field, variable name).
fn suggest(rest: &str, table: &toml::Table) -> Option<(String, String)> {
    let mut names = Vec::new();
    env_names(table, &[], &mut names);
    let flat = rest.replace(ENV_SECTION_SEP, "_").to_ascii_lowercase();
    names
        .iter()
        .find(|(path, _)| path.join("_") == flat)
        .or_else(|| names.iter().find(|(path, _)| path.last() == Some(&flat)))
        .map(|(path, name)| (path.join("."), name.clone()))
}

/// The variable of the first field of the section at `path`, for examples.
fn first_field_var(path: &[String], table: &toml::Table) -> String {
    let mut names = Vec::new();
    env_names(table, &[], &mut names);
    names
        .into_iter()
        .find(|(p, _)| p.starts_with(path))
        .map_or_else(|| format!("{ENV_PREFIX}<SECTION>__<FIELD>"), |(_, n)| n)
}

/// The readings of an override's value to try, in order: as a TOML value
/// when it parses as one, then as the plain string.
fn env_values(value: &str) -> Vec<toml::Value> {
    let plain = toml::Value::String(value.to_owned());
    match format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
    {
        Some(v) if v != plain => vec![v, plain],
        _ => vec![plain],
    }
}

/// Sets the field at `path` (which [`env_field_path`] found) to `value`.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut here = table;
    for key in parents {
        match here.get_mut(key) {
            Some(toml::Value::Table(t)) => here = t,
            _ => return,
        }
    }
    here.insert(last.clone(), value);
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on for HTTPS.
    pub listen: SocketAddr,
    /// Directory for the database, the repository and temporary uploads.
    pub data_dir: PathBuf,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// TLS settings.
    pub tls: TlsConfig,
    /// TUF online keys and expiries.
    pub tuf: TufConfig,
    /// Request limits and timeouts.
    pub limits: LimitsConfig,
    /// Administrator tokens (campaign API), stored as SHA-256 hex of the token.
    pub admins: Vec<TokenEntry>,
    /// Manufacturers allowed to upload, each with its token hash.
    pub manufacturers: Vec<ManufacturerEntry>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: PathBuf::from("/var/lib/wardgate-ota"),
            log_format: "text".into(),
            tls: TlsConfig::default(),
            tuf: TufConfig::default(),
            limits: LimitsConfig::default(),
            admins: Vec::new(),
            manufacturers: Vec::new(),
        }
    }
}

/// TLS settings. The server certificate is required; the client CA (the
/// ward CA that issues gateway certificates) is required for the gateway API.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA bundle that gateway client certificates must chain to.
    pub client_ca: PathBuf,
}

/// TUF online keys and metadata lifetimes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TufConfig {
    /// Ed25519 snapshot key (PKCS#8 PEM), named in root.json's snapshot role.
    pub snapshot_key: PathBuf,
    /// Ed25519 timestamp key (PKCS#8 PEM), named in root.json's timestamp role.
    pub timestamp_key: PathBuf,
    /// Lifetime of each new timestamp.json.
    #[serde(with = "humantime_serde")]
    pub timestamp_expiry: Duration,
    /// How often the timestamp is re-signed; must be well below the expiry.
    #[serde(with = "humantime_serde")]
    pub timestamp_refresh: Duration,
    /// Lifetime of each new snapshot.json.
    #[serde(with = "humantime_serde")]
    pub snapshot_expiry: Duration,
}

impl Default for TufConfig {
    fn default() -> Self {
        Self {
            snapshot_key: PathBuf::new(),
            timestamp_key: PathBuf::new(),
            timestamp_expiry: Duration::from_secs(24 * 3600),
            timestamp_refresh: Duration::from_secs(6 * 3600),
            snapshot_expiry: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Request limits and timeouts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest firmware image accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Largest signed role metadata accepted with an upload, in bytes.
    pub max_metadata_bytes: u32,
    /// Largest JSON request body on the API, in bytes.
    pub max_json_bytes: usize,
    /// Largest request head (request line plus headers), in bytes.
    pub max_header_bytes: usize,
    /// Time allowed to receive the request head.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time allowed for an ordinary (non-upload) request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time allowed for a whole release upload.
    #[serde(with = "humantime_serde")]
    pub upload_timeout: Duration,
    /// Most concurrent TLS connections; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// Sustained requests per second served to one client address
    /// ([`crate::peer_limit`]); more are answered `429` with `Retry-After`
    /// before any other work. A gateway makes a few per sync round
    /// whatever the size of its ward (devices download from the gateway).
    pub requests_per_peer_per_second: u32,
    /// Requests one client address may send at once above the sustained
    /// rate (a gateway's rounds back to back while a wave finishes).
    pub request_burst_per_peer: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 512 * 1024 * 1024,
            max_metadata_bytes: 1024 * 1024,
            max_json_bytes: 256 * 1024,
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(30 * 60),
            max_connections: 1024,
            requests_per_peer_per_second: 50,
            request_burst_per_peer: 500,
        }
    }
}

/// A named token, stored as the SHA-256 hex of the token itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it (for the audit log).
    pub name: String,
    /// Lower-case hex SHA-256 of the token (`ota-server token` prints both).
    pub token_sha256: String,
}

/// A manufacturer allowed to upload releases for its delegated role.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManufacturerEntry {
    /// The manufacturer: its delegated role name and path prefix.
    pub name: ManufacturerName,
    /// Lower-case hex SHA-256 of its upload token.
    pub token_sha256: String,
}

/// A configuration that passed [`Config::validate`].
#[derive(Debug, Clone)]
pub struct ValidConfig(Config);

impl std::ops::Deref for ValidConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.0
    }
}

impl Config {
    /// Reads `path` (or only defaults when `None`), then applies `WARDGATE_*`
    /// overrides from `env`.
    ///
    /// # Errors
    /// [`ConfigError`] when the file cannot be read or parsed, or an override
    /// does not parse.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: p.to_owned(),
                    source,
                })?
            }
            None => Config::default(),
        };
        cfg.apply_env(env)?;
        Ok(cfg)
    }

    /// Applies `WARDGATE_OTA_*` overrides from `env` (other variables are
    /// ignored).
    ///
    /// The variable names a field: `WARDGATE_OTA_<FIELD>` for a top-level
    /// field (`WARDGATE_OTA_LISTEN`), `WARDGATE_OTA_<SECTION>__<FIELD>` for a
    /// field of a section (`WARDGATE_OTA_TLS__CERT`,
    /// `WARDGATE_OTA_TUF__TIMESTAMP_EXPIRY`). The value is read as a TOML
    /// value when it parses as one that fits the field (numbers, booleans,
    /// quoted strings, arrays such as `[{name = "ops", token_sha256 = "..."}]`)
    /// and as a plain string otherwise (`0.0.0.0:8443`, `/srv/ota`, `6h`).
    ///
    /// # Errors
    /// [`ConfigError::Env`] naming the variable that names no field, names a
    /// whole section, or whose value does not fit its field.
    pub fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let vars: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        if vars.is_empty() {
            return Ok(());
        }
        let mut table = match toml::Value::try_from(&*self) {
            Ok(toml::Value::Table(t)) => t,
            Ok(_) => {
                return Err(env_err(
                    "WARDGATE_OTA_*",
                    "the configuration is not a table",
                ))
            }
            Err(e) => {
                return Err(env_err(
                    "(all)",
                    format!("cannot merge environment overrides into the configuration: {e}"),
                ))
            }
        };
        for (var, value) in &vars {
            let path = env_field_path(var, &table)?;
            let mut last = None;
            for candidate in env_values(value) {
                set_path(&mut table, &path, candidate);
                match Config::deserialize(toml::Value::Table(table.clone())) {
                    Ok(_) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                let shown: String = value.chars().take(80).collect();
                return Err(env_err(
                    var,
                    format!(
                        "value {shown:?} does not fit config field `{}`: {}",
                        path.join("."),
                        e.message()
                    ),
                ));
            }
        }
        *self = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| env_err("WARDGATE_OTA_*", e.message().to_owned()))?;
        Ok(())
    }

    /// Checks every field; refuses insecure or impossible settings.
    ///
    /// # Errors
    /// [`ConfigError::Field`] naming the first bad field and what to do.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        for (name, p) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.client_ca", &self.tls.client_ca),
            ("tuf.snapshot_key", &self.tuf.snapshot_key),
            ("tuf.timestamp_key", &self.tuf.timestamp_key),
        ] {
            if p.as_os_str().is_empty() {
                return Err(field(name, "is required; give the path of a PEM file"));
            }
            if !p.is_file() {
                return Err(field(
                    name,
                    format!("{} does not exist or is not a file", p.display()),
                ));
            }
        }
        if self.tuf.snapshot_key == self.tuf.timestamp_key {
            return Err(field(
                "tuf.timestamp_key",
                "must differ from tuf.snapshot_key: TUF roles use separate keys",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(field("data_dir", "is required"));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(field("log_format", "must be `text` or `json`"));
        }
        let t = &self.tuf;
        if t.timestamp_expiry < Duration::from_secs(2) {
            return Err(field("tuf.timestamp_expiry", "must be at least 2s"));
        }
        if t.timestamp_refresh.is_zero() || t.timestamp_refresh * 2 > t.timestamp_expiry {
            return Err(field(
                "tuf.timestamp_refresh",
                format!(
                    "must be non-zero and at most half of tuf.timestamp_expiry ({}), so clients never see an expired timestamp",
                    humantime::format_duration(t.timestamp_expiry)
                ),
            ));
        }
        if t.snapshot_expiry < t.timestamp_expiry {
            return Err(field(
                "tuf.snapshot_expiry",
                "must be at least tuf.timestamp_expiry",
            ));
        }
        let l = &self.limits;
        if l.max_upload_bytes == 0 {
            return Err(field("limits.max_upload_bytes", "must be greater than 0"));
        }
        if l.max_metadata_bytes < 1024 {
            return Err(field("limits.max_metadata_bytes", "must be at least 1024"));
        }
        if l.max_json_bytes < 1024 {
            return Err(field("limits.max_json_bytes", "must be at least 1024"));
        }
        if !(1024..=1024 * 1024).contains(&l.max_header_bytes) {
            return Err(field(
                "limits.max_header_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        for (name, d) in [
            ("limits.header_timeout", l.header_timeout),
            ("limits.request_timeout", l.request_timeout),
            ("limits.upload_timeout", l.upload_timeout),
        ] {
            if d.is_zero() {
                return Err(field(name, "must be greater than 0"));
            }
        }
        if l.max_connections == 0 {
            return Err(field("limits.max_connections", "must be greater than 0"));
        }
        if !(1..=100_000).contains(&l.requests_per_peer_per_second) {
            return Err(field(
                "limits.requests_per_peer_per_second",
                "must be between 1 and 100000 (requests a second from one client address; \
                 a gateway needs a few)",
            ));
        }
        if !(1..=1_000_000).contains(&l.request_burst_per_peer) {
            return Err(field(
                "limits.request_burst_per_peer",
                "must be between 1 and 1000000 (requests one client address may send at once)",
            ));
        }
        if self.admins.is_empty() {
            return Err(field(
                "admins",
                "at least one admin token is needed for the campaign API; create one with `ota-server token`",
            ));
        }
        for (i, a) in self.admins.iter().enumerate() {
            check_hash(&format!("admins[{i}].token_sha256"), &a.token_sha256)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, m) in self.manufacturers.iter().enumerate() {
            check_hash(&format!("manufacturers[{i}].token_sha256"), &m.token_sha256)?;
            if !seen.insert(m.name.clone()) {
                return Err(field(
                    format!("manufacturers[{i}].name"),
                    format!("{} is listed twice", m.name),
                ));
            }
        }
        let mut hashes = std::collections::BTreeSet::new();
        for h in self
            .admins
            .iter()
            .map(|a| &a.token_sha256)
            .chain(self.manufacturers.iter().map(|m| &m.token_sha256))
        {
            if !hashes.insert(h.to_ascii_lowercase()) {
                return Err(field(
                    "manufacturers",
                    "two principals share one token; give each its own `ota-server token`",
                ));
            }
        }
        Ok(ValidConfig(self))
    }
}

fn check_hash(name: &str, h: &str) -> Result<(), ConfigError> {
    if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(field(
            name,
            "must be the 64-character hex SHA-256 of the token (never the token itself); `ota-server token` prints it",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_field_names() {
        let mut c = Config::default();
        c.apply_env([("WARDGATE_OTA_TUF__TIMESTAMP_EXPIRY".into(), "10s".into())])
            .unwrap();
        assert_eq!(c.tuf.timestamp_expiry, Duration::from_secs(10));
        let e = c
            .apply_env([("WARDGATE_OTA_LISTEN".into(), "nope".into())])
            .unwrap_err();
        assert!(e.to_string().contains("WARDGATE_OTA_LISTEN"), "{e}");
        let e = Config::default().validate().unwrap_err();
        assert!(e.to_string().contains("tls.cert"), "{e}");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_overrides_follow_the_section_convention() {
        let mut c = Config::default();
        c.tls.key = "/from/file.key".into();
        c.apply_env(env(&[
            ("WARDGATE_OTA_LISTEN", "0.0.0.0:9443"),
            ("WARDGATE_OTA_DATA_DIR", "/srv/ota"),
            ("WARDGATE_OTA_LOG_FORMAT", "json"),
            ("WARDGATE_OTA_TLS__CERT", "/etc/ota/server.pem"),
            ("WARDGATE_OTA_LIMITS__MAX_UPLOAD_BYTES", "1048576"),
            ("WARDGATE_OTA_TUF__TIMESTAMP_REFRESH", "\"2h\""),
            (
                "WARDGATE_OTA_ADMINS",
                &format!(
                    "[{{ name = \"ops\", token_sha256 = \"{}\" }}]",
                    "a".repeat(64)
                ),
            ),
            ("RUST_LOG", "ignored"),
            ("WARDGATE_LOG", "ignored"),
        ]))
        .unwrap();
        assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 9443)));
        assert_eq!(c.data_dir, PathBuf::from("/srv/ota"));
        assert_eq!(c.log_format, "json");
        assert_eq!(c.tls.cert, PathBuf::from("/etc/ota/server.pem"));
        assert_eq!(
            c.tls.key,
            PathBuf::from("/from/file.key"),
            "other fields of the section stay"
        );
        assert_eq!(c.limits.max_upload_bytes, 1_048_576);
        assert_eq!(c.tuf.timestamp_refresh, Duration::from_secs(2 * 3600));
        assert_eq!(c.admins.len(), 1);
        assert_eq!(c.admins[0].name, "ops");
        // A value that parses as TOML but does not fit a text field is taken
        // as the plain string.
        c.apply_env(env(&[("WARDGATE_OTA_DATA_DIR", "2024")]))
            .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("2024"));
    }

    #[test]
    fn unknown_env_variables_are_refused_by_name() {
        for (var, hint) in [
            ("WARDGATE_OTA_TLS_CERT", "WARDGATE_OTA_TLS__CERT"),
            (
                "WARDGATE_OTA_MAX_UPLOAD_BYTES",
                "WARDGATE_OTA_LIMITS__MAX_UPLOAD_BYTES",
            ),
            (
                "WARDGATE_OTA_LISTEN_ADDR",
                "WARDGATE_OTA_<SECTION>__<FIELD>",
            ),
            ("WARDGATE_OTA_TLS__NOPE", "WARDGATE_OTA_<SECTION>__<FIELD>"),
            ("WARDGATE_OTA_TLS", "WARDGATE_OTA_TLS__"),
            ("WARDGATE_OTA_LISTEN__PORT", "WARDGATE_OTA_"),
            ("WARDGATE_OTA_", "WARDGATE_OTA_"),
        ] {
            let e = Config::default().apply_env(env(&[(var, "x")])).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, ConfigError::Env { .. }), "{msg}");
            assert!(msg.contains(&format!("{var}:")), "{msg}");
            assert!(msg.contains(hint), "{var}: {msg}");
        }
        let e = Config::default()
            .apply_env(env(&[("WARDGATE_OTA_LIMITS__MAX_CONNECTIONS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("WARDGATE_OTA_LIMITS__MAX_CONNECTIONS"), "{e}");
        assert!(e.contains("limits.max_connections"), "{e}");
    }

    #[test]
    fn refresh_must_be_well_below_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let f = |n: &str| {
            let p = dir.path().join(n);
            std::fs::write(&p, "x").unwrap();
            p
        };
        let mut c = Config::default();
        c.tls.cert = f("c");
        c.tls.key = f("k");
        c.tls.client_ca = f("ca");
        c.tuf.snapshot_key = f("s");
        c.tuf.timestamp_key = f("t");
        c.admins.push(TokenEntry {
            name: "ops".into(),
            token_sha256: "a".repeat(64),
        });
        c.tuf.timestamp_refresh = c.tuf.timestamp_expiry;
        let e = c.clone().validate().unwrap_err();
        assert!(e.to_string().contains("tuf.timestamp_refresh"), "{e}");
        c.tuf.timestamp_refresh = c.tuf.timestamp_expiry / 4;
        c.admins[0].token_sha256 = "secret".into();
        let e = c.clone().validate().unwrap_err();
        assert!(e.to_string().contains("admins[0].token_sha256"), "{e}");
        c.admins[0].token_sha256 = "a".repeat(64);
        c.clone().validate().unwrap();
        for (set, name) in [
            (
                (|l: &mut LimitsConfig| l.requests_per_peer_per_second = 0)
                    as fn(&mut LimitsConfig),
                "limits.requests_per_peer_per_second",
            ),
            (
                |l: &mut LimitsConfig| l.requests_per_peer_per_second = 100_001,
                "limits.requests_per_peer_per_second",
            ),
            (
                |l: &mut LimitsConfig| l.request_burst_per_peer = 0,
                "limits.request_burst_per_peer",
            ),
        ] {
            let mut bad = c.clone();
            set(&mut bad.limits);
            let e = bad.validate().unwrap_err();
            assert!(
                matches!(&e, ConfigError::Field { field, .. } if field == name),
                "{e}"
            );
        }
        c.apply_env(env(&[(
            "WARDGATE_OTA_LIMITS__REQUESTS_PER_PEER_PER_SECOND",
            "7",
        )]))
        .unwrap();
        assert_eq!(c.limits.requests_per_peer_per_second, 7);
        c.validate().unwrap();
    }
}
