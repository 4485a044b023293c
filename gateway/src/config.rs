//! Gateway configuration: one TOML file, safe defaults, `WARDGATE_*`
//! environment overrides, and refusal to start on an invalid or insecure
//! setting with a message that names the field.
//!
//! Each section's type lives with the component it configures
//! ([`crate::admin::AdminConfig`], [`crate::uplink::UplinkConfig`], ...);
//! this module assembles and validates the whole.
//!
//! Environment overrides take the form `WARDGATE_<SECTION>__<FIELD>` (note
//! the double underscore), e.g. `WARDGATE_EDGE__LISTEN=0.0.0.0:8883` or
//! `WARDGATE_STORAGE__DATA_DIR=/srv/wardgate`. The value is read as a TOML
//! value when it parses as one (numbers, booleans, quoted strings, arrays)
//! and as a plain string otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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
    #[error("invalid config {origin}: {message}")]
    Parse {
        /// The file (or "environment").
        origin: String,
        /// The parser's message (names the field).
        message: String,
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

/// The whole gateway configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database and state live.
    pub storage: StorageConfig,
    /// The device-facing mutual-TLS MQTT listener.
    pub edge: EdgeConfig,
    /// The embedded broker behind the edge.
    pub broker: BrokerConfig,
    /// Logging.
    pub log: LogConfig,
    /// The admin HTTPS API.
    pub admin: crate::admin::AdminConfig,
    /// Store-and-forward uplink to the hospital broker.
    pub uplink: crate::uplink::UplinkConfig,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory for the database and gateway state.
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/wardgate"),
        }
    }
}

impl StorageConfig {
    /// The gateway database file.
    #[must_use]
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("gateway.db")
    }
}

/// `[edge]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Address of the device listener (TLS only).
    pub listen: SocketAddr,
    /// PEM file with the ward device CA that client certificates must chain to.
    pub ca_cert: PathBuf,
    /// PEM certificate chain the gateway presents to devices.
    pub server_cert: PathBuf,
    /// PEM private key of `server_cert`; must not be readable by group or others.
    pub server_key: PathBuf,
    /// Most simultaneous device sessions; further connections are refused.
    pub max_connections: usize,
    /// Largest MQTT packet accepted from a device, in bytes.
    pub max_packet_bytes: usize,
    /// Largest PUBLISH payload accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Time allowed for the TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time allowed between TLS completion and the MQTT CONNECT.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest silence from a device before it is dropped (also bounded by
    /// 1.5 x its keep-alive).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Sustained PUBLISH rate allowed per device (messages per second).
    pub rate_per_second: f64,
    /// Burst of PUBLISHes allowed above the sustained rate.
    pub rate_burst: u32,
    /// Bounded queue of packets from the broker to one device; a device that
    /// does not read is disconnected when it is full.
    pub outbound_queue: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8883),
            ca_cert: PathBuf::new(),
            server_cert: PathBuf::new(),
            server_key: PathBuf::new(),
            max_connections: 512,
            max_packet_bytes: 65_536,
            max_payload_bytes: 16_384,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            rate_per_second: 50.0,
            rate_burst: 100,
            outbound_queue: 64,
        }
    }
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Address the embedded broker binds (ephemeral port); must be loopback.
    pub bind: IpAddr,
    /// Most broker connections (edge sessions plus local links).
    pub max_connections: usize,
    /// Largest payload the broker accepts.
    pub max_payload_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            max_connections: 10_010,
            max_payload_bytes: 262_144,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Text or JSON.
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `gateway=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Config {
    /// Read `path`, apply `WARDGATE_*` overrides from the process
    /// environment, and validate.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, variable or field at fault.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config =
            Self::from_toml_with_env(&text, &path.display().to_string(), std::env::vars())?;
        config.validate()?;
        Ok(config)
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
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin: origin.to_owned(),
                    message: e.to_string(),
                })?;
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("WARDGATE_") else {
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
        Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
            origin: format!("{origin} (with WARDGATE_* overrides)"),
            message: e.to_string(),
        })
    }

    /// Refuse invalid or insecure settings.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = &self.edge;
        require_file(
            "edge.ca_cert",
            &e.ca_cert,
            "the ward device CA certificate (PEM); create one with `gateway pki init`",
        )?;
        require_file(
            "edge.server_cert",
            &e.server_cert,
            "the gateway's server certificate (PEM); create one with `gateway pki server`",
        )?;
        require_file(
            "edge.server_key",
            &e.server_key,
            "the server certificate's private key (PEM)",
        )?;
        check_private("edge.server_key", &e.server_key)?;
        if e.max_connections == 0 {
            return Err(ConfigError::invalid(
                "edge.max_connections",
                "must be at least 1",
            ));
        }
        if e.max_packet_bytes < 128 || e.max_packet_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError::invalid(
                "edge.max_packet_bytes",
                "must be between 128 and 16777216",
            ));
        }
        if e.max_payload_bytes == 0 || e.max_payload_bytes > e.max_packet_bytes {
            return Err(ConfigError::invalid(
                "edge.max_payload_bytes",
                "must be at least 1 and no more than edge.max_packet_bytes",
            ));
        }
        if e.max_payload_bytes > self.broker.max_payload_bytes {
            return Err(ConfigError::invalid(
                "edge.max_payload_bytes",
                "must not exceed broker.max_payload_bytes",
            ));
        }
        for (field, d) in [
            ("edge.handshake_timeout", e.handshake_timeout),
            ("edge.connect_timeout", e.connect_timeout),
            ("edge.idle_timeout", e.idle_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(3600) {
                return Err(ConfigError::invalid(field, "must be between 1ms and 1h"));
            }
        }
        if !(e.rate_per_second.is_finite() && e.rate_per_second > 0.0) {
            return Err(ConfigError::invalid(
                "edge.rate_per_second",
                "must be a positive number",
            ));
        }
        if e.rate_burst == 0 {
            return Err(ConfigError::invalid(
                "edge.rate_burst",
                "must be at least 1",
            ));
        }
        if e.outbound_queue == 0 || e.outbound_queue > 65_536 {
            return Err(ConfigError::invalid(
                "edge.outbound_queue",
                "must be between 1 and 65536",
            ));
        }
        if !self.broker.bind.is_loopback() {
            return Err(ConfigError::invalid(
                "broker.bind",
                format!(
                    "is {}, not a loopback address: the embedded broker has no ACL and must only be reachable by the edge; use 127.0.0.1",
                    self.broker.bind
                ),
            ));
        }
        if self.broker.max_connections <= e.max_connections {
            return Err(ConfigError::invalid(
                "broker.max_connections",
                "must exceed edge.max_connections (local links need room too)",
            ));
        }
        self.admin.validate()?;
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("storage.data_dir", "must be set"));
        }
        self.uplink.validate().map_err(|e| match e {
            crate::uplink::UplinkError::Config { field, reason } => {
                ConfigError::invalid(format!("uplink.{field}"), reason)
            }
            other => ConfigError::invalid("uplink", other.to_string()),
        })?;
        Ok(())
    }
}

fn require_file(field: &str, path: &Path, what: &str) -> Result<(), ConfigError> {
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

/// Refuse a private key file readable or writable by group or others.
///
/// # Errors
/// [`ConfigError::Invalid`] with the mode and the `chmod` to run.
pub fn check_private(field: &str, path: &Path) -> Result<(), ConfigError> {
    wardgate_tls::keyfile::check_private(path)
        .map_err(|e| ConfigError::invalid(field, e.to_string()))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn refuses_insecure_settings_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        for p in [&ca, &cert, &key] {
            std::fs::write(p, "x").unwrap();
        }
        let mut c = Config::default();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("edge.ca_cert"), "{err}");
        c.edge.ca_cert = ca;
        c.edge.server_cert = cert;
        c.edge.server_key = key.clone();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(
                err.contains("edge.server_key") && err.contains("chmod 600"),
                "{err}"
            );
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        c.validate().unwrap();
        c.broker.bind = "0.0.0.0".parse().unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("broker.bind"), "{err}");
    }
}
