//! The `[ota]` configuration section: where the OTA server is, the TUF root
//! the gateway pins, and the TLS files it talks to the server with.
//!
//! OTA is off while `ota.server_url` is empty. Once it is set, every file
//! must exist, the client key must be private to the gateway's user, and
//! the URL must be `https://`: the gateway authenticates the server by the
//! ward CA (`ota.ca_cert`) and itself by its client certificate, as the
//! OTA server's gateway API demands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::error::{check_private, require_file, ConfigError};

/// Settings of the gateway's OTA agent (TUF client and image cache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtaConfig {
    /// Base URL of the OTA server, e.g. `https://ota.hospital.example:8443/`;
    /// metadata is read from `<server_url>/metadata/`, images from
    /// `<server_url>/targets/`. Empty: OTA is disabled.
    pub server_url: String,
    /// The TUF `root.json` this gateway trusts first (shipped out of band).
    /// Later roots are accepted only when signed by the previous one.
    pub trusted_root: PathBuf,
    /// PEM CA certificate(s) the OTA server's certificate must chain to.
    pub ca_cert: PathBuf,
    /// PEM client certificate the gateway presents to the OTA server.
    pub client_cert: PathBuf,
    /// PEM private key of `client_cert`; must not be readable by group or others.
    pub client_key: PathBuf,
    /// How often the TUF metadata is refreshed (also refreshed on demand).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Time allowed for one metadata request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time allowed for one image download request (a cut download resumes).
    #[serde(with = "humantime_serde")]
    pub download_timeout: Duration,
    /// Image downloads from the OTA server running at once.
    pub max_parallel_downloads: usize,
}

impl Default for OtaConfig {
    fn default() -> Self {
        Self {
            server_url: String::new(),
            trusted_root: PathBuf::new(),
            ca_cert: PathBuf::new(),
            client_cert: PathBuf::new(),
            client_key: PathBuf::new(),
            refresh_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(60),
            download_timeout: Duration::from_secs(30 * 60),
            max_parallel_downloads: 2,
        }
    }
}

impl OtaConfig {
    /// Whether OTA is configured at all (`ota.server_url` is set).
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.server_url.trim().is_empty()
    }

    /// The server URL as a directory URL (with a trailing `/`).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for `ota.server_url` if it does not parse or
    /// is not `https://`.
    pub fn base_url(&self) -> Result<Url, ConfigError> {
        let field = "ota.server_url";
        let mut text = self.server_url.trim().to_owned();
        if !text.ends_with('/') {
            text.push('/');
        }
        let url = Url::parse(&text).map_err(|e| {
            ConfigError::invalid(
                field,
                format!("{text:?} is not a URL ({e}); set it to the OTA server, e.g. https://ota.example:8443/"),
            )
        })?;
        if url.scheme() != "https" {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "{url} is not https://: the gateway only talks to the OTA server over TLS with its client certificate"
                ),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "{url} must be a plain https://host[:port]/[path/] without query or fragment"
                ),
            ));
        }
        Ok(url)
    }

    /// `<server_url>/metadata/`.
    ///
    /// # Errors
    /// As [`OtaConfig::base_url`].
    pub fn metadata_url(&self) -> Result<Url, ConfigError> {
        join(&self.base_url()?, "metadata/")
    }

    /// `<server_url>/targets/`.
    ///
    /// # Errors
    /// As [`OtaConfig::base_url`].
    pub fn targets_url(&self) -> Result<Url, ConfigError> {
        join(&self.base_url()?, "targets/")
    }

    /// Refuse settings that are missing, out of range or insecure. A
    /// disabled section (no `server_url`) must not set the TLS or root files
    /// either, so a half-written section is not silently ignored.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            for (field, path) in [
                ("ota.trusted_root", &self.trusted_root),
                ("ota.ca_cert", &self.ca_cert),
                ("ota.client_cert", &self.client_cert),
                ("ota.client_key", &self.client_key),
            ] {
                if !path.as_os_str().is_empty() {
                    return Err(ConfigError::invalid(
                        field,
                        "is set but `ota.server_url` is empty: set `ota.server_url` to enable OTA updates, or remove the [ota] section",
                    ));
                }
            }
            return Ok(());
        }
        self.base_url()?;
        require_file(
            "ota.trusted_root",
            &self.trusted_root,
            "the TUF root.json of the OTA repository (from the repository operator, out of band)",
        )?;
        check_root_json(&self.trusted_root)?;
        require_file(
            "ota.ca_cert",
            &self.ca_cert,
            "the PEM CA certificate that signed the OTA server's certificate",
        )?;
        require_file(
            "ota.client_cert",
            &self.client_cert,
            "the gateway's PEM client certificate for the OTA server",
        )?;
        require_file(
            "ota.client_key",
            &self.client_key,
            "the PEM private key of ota.client_cert",
        )?;
        check_private("ota.client_key", &self.client_key)?;
        range(
            "ota.refresh_interval",
            self.refresh_interval,
            Duration::from_secs(10),
            Duration::from_secs(24 * 3600),
            "between 10s and 24h (keep it well below the timestamp lifetime of the OTA server)",
        )?;
        range(
            "ota.request_timeout",
            self.request_timeout,
            Duration::from_secs(1),
            Duration::from_secs(3600),
            "between 1s and 1h",
        )?;
        range(
            "ota.download_timeout",
            self.download_timeout,
            Duration::from_secs(10),
            Duration::from_secs(24 * 3600),
            "between 10s and 24h",
        )?;
        if self.max_parallel_downloads == 0 || self.max_parallel_downloads > 16 {
            return Err(ConfigError::invalid(
                "ota.max_parallel_downloads",
                "must be between 1 and 16",
            ));
        }
        Ok(())
    }
}

fn join(base: &Url, path: &str) -> Result<Url, ConfigError> {
    base.join(path).map_err(|e| {
        ConfigError::invalid(
            "ota.server_url",
            format!("cannot append {path} to {base}: {e}"),
        )
    })
}

fn range(
    field: &str,
    value: Duration,
    min: Duration,
    max: Duration,
    what: &str,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            field,
            format!("is {}, must be {what}", humantime::format_duration(value)),
        ));
    }
    Ok(())
}

/// The pinned root must at least be TUF root metadata; its signatures are
/// checked when it is first used.
fn check_root_json(path: &Path) -> Result<(), ConfigError> {
    let field = "ota.trusted_root";
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::invalid(field, format!("{} cannot be read: {e}", path.display()))
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        ConfigError::invalid(
            field,
            format!(
                "{} is not JSON ({e}); give the repository's root.json",
                path.display()
            ),
        )
    })?;
    if value
        .pointer("/signed/_type")
        .and_then(serde_json::Value::as_str)
        != Some("root")
    {
        return Err(ConfigError::invalid(
            field,
            format!(
                "{} is not TUF root metadata (signed._type is not \"root\"); give the repository's root.json",
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn complete(dir: &Path) -> OtaConfig {
        let key = write(dir, "gw.key", "key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        OtaConfig {
            server_url: "https://ota.example:8443".into(),
            trusted_root: write(
                dir,
                "root.json",
                r#"{"signed":{"_type":"root"},"signatures":[]}"#,
            ),
            ca_cert: write(dir, "ca.pem", "ca"),
            client_cert: write(dir, "gw.pem", "cert"),
            client_key: key,
            ..OtaConfig::default()
        }
    }

    fn field_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn disabled_by_default_and_parses_from_toml() {
        let c = OtaConfig::default();
        assert!(!c.enabled());
        c.validate().unwrap();
        let c: OtaConfig =
            toml::from_str("server_url = \"https://ota.example/\"\nrefresh_interval = \"2m\"\n")
                .unwrap();
        assert_eq!(c.refresh_interval, Duration::from_secs(120));
        assert!(toml::from_str::<OtaConfig>("servr_url = \"x\"").is_err());
    }

    #[test]
    fn urls_are_derived_from_the_server_url() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = complete(dir.path());
        c.validate().unwrap();
        assert_eq!(
            c.metadata_url().unwrap().as_str(),
            "https://ota.example:8443/metadata/"
        );
        c.server_url = "https://ota.example/wardgate".into();
        assert_eq!(
            c.targets_url().unwrap().as_str(),
            "https://ota.example/wardgate/targets/"
        );
    }

    #[test]
    fn refuses_insecure_or_incomplete_settings_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let base = complete(dir.path());
        let mut c = base.clone();
        c.server_url = "http://ota.example".into();
        assert_eq!(field_of(c.validate().unwrap_err()), "ota.server_url");
        let mut c = base.clone();
        c.trusted_root = dir.path().join("missing.json");
        assert_eq!(field_of(c.validate().unwrap_err()), "ota.trusted_root");
        let mut c = base.clone();
        c.trusted_root = write(dir.path(), "t.json", r#"{"signed":{"_type":"targets"}}"#);
        assert_eq!(field_of(c.validate().unwrap_err()), "ota.trusted_root");
        let mut c = base.clone();
        c.refresh_interval = Duration::from_secs(1);
        assert_eq!(field_of(c.validate().unwrap_err()), "ota.refresh_interval");
        let mut c = base.clone();
        c.max_parallel_downloads = 0;
        assert_eq!(
            field_of(c.validate().unwrap_err()),
            "ota.max_parallel_downloads"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&base.client_key, std::fs::Permissions::from_mode(0o644))
                .unwrap();
            assert_eq!(field_of(base.validate().unwrap_err()), "ota.client_key");
        }
        let half = OtaConfig {
            ca_cert: PathBuf::from("/etc/ca.pem"),
            ..OtaConfig::default()
        };
        assert_eq!(field_of(half.validate().unwrap_err()), "ota.ca_cert");
    }
}
