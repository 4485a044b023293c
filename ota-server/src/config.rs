//! Server configuration: one TOML file, safe defaults, `WARDGATE_*`
//! environment overrides, and a check that refuses invalid or insecure
//! settings by naming the field.
//!
//! [`Config::load`] reads the file and applies the overrides; the result is
//! only usable after [`Config::validate`] returns a [`ValidConfig`], so the
//! server cannot start on a configuration nobody checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names::ManufacturerName;

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

    /// Applies `WARDGATE_OTA_*` overrides: `LISTEN`, `DATA_DIR`, `LOG_FORMAT`,
    /// `TLS_CERT`, `TLS_KEY`, `TLS_CLIENT_CA`, `TUF_SNAPSHOT_KEY`,
    /// `TUF_TIMESTAMP_KEY`, `TUF_TIMESTAMP_EXPIRY`, `TUF_TIMESTAMP_REFRESH`,
    /// `TUF_SNAPSHOT_EXPIRY`, `MAX_UPLOAD_BYTES`.
    ///
    /// # Errors
    /// [`ConfigError::Field`] naming the variable whose value does not parse.
    pub fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let vars: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("WARDGATE_OTA_"))
            .collect();
        let dur = |k: &str, v: &str| {
            humantime::parse_duration(v).map_err(|e| field(k, format!("{e}; use e.g. `30s`, `6h`")))
        };
        for (k, v) in &vars {
            match k.trim_start_matches("WARDGATE_OTA_") {
                "LISTEN" => {
                    self.listen = v
                        .parse()
                        .map_err(|e| field(k, format!("{e}; use e.g. 0.0.0.0:8443")))?;
                }
                "DATA_DIR" => self.data_dir = v.into(),
                "LOG_FORMAT" => v.clone_into(&mut self.log_format),
                "TLS_CERT" => self.tls.cert = v.into(),
                "TLS_KEY" => self.tls.key = v.into(),
                "TLS_CLIENT_CA" => self.tls.client_ca = v.into(),
                "TUF_SNAPSHOT_KEY" => self.tuf.snapshot_key = v.into(),
                "TUF_TIMESTAMP_KEY" => self.tuf.timestamp_key = v.into(),
                "TUF_TIMESTAMP_EXPIRY" => self.tuf.timestamp_expiry = dur(k, v)?,
                "TUF_TIMESTAMP_REFRESH" => self.tuf.timestamp_refresh = dur(k, v)?,
                "TUF_SNAPSHOT_EXPIRY" => self.tuf.snapshot_expiry = dur(k, v)?,
                "MAX_UPLOAD_BYTES" => {
                    self.limits.max_upload_bytes = v
                        .parse()
                        .map_err(|e| field(k, format!("{e}; give a byte count")))?;
                }
                _ => {
                    return Err(field(
                        k,
                        "unknown WARDGATE_OTA_ variable; see docs/ota-server.md",
                    ))
                }
            }
        }
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
        c.apply_env([("WARDGATE_OTA_TUF_TIMESTAMP_EXPIRY".into(), "10s".into())])
            .unwrap();
        assert_eq!(c.tuf.timestamp_expiry, Duration::from_secs(10));
        let e = c
            .apply_env([("WARDGATE_OTA_LISTEN".into(), "nope".into())])
            .unwrap_err();
        assert!(e.to_string().contains("WARDGATE_OTA_LISTEN"), "{e}");
        let e = Config::default().validate().unwrap_err();
        assert!(e.to_string().contains("tls.cert"), "{e}");
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
        c.validate().unwrap();
    }
}
