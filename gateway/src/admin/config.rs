//! The `[admin]` configuration section.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Settings of the admin HTTPS API. Every field has a safe default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API at all.
    pub enabled: bool,
    /// Listen address; loopback by default (reach it through an SSH tunnel
    /// or a management VLAN).
    pub bind: SocketAddr,
    /// PEM certificate chain of the admin server. When unset, the gateway's
    /// device-facing server certificate is used.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
    /// Time allowed for one request, end to end.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time allowed for the TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Requests served at once; more wait in the accept queue.
    pub max_concurrent_requests: usize,
    /// Longest break-glass window that may be issued (minutes).
    pub break_glass_max_minutes: u32,
    /// Days without use after which the access review flags a token.
    pub stale_after_days: u32,
    /// TOTP steps of clock drift tolerated either side (0 to 2).
    pub totp_skew_steps: u8,
    /// Most audit rows one `GET /api/v1/audit` returns.
    pub audit_page_max: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 8443)),
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_requests: 32,
            break_glass_max_minutes: 240,
            stale_after_days: 90,
            totp_skew_steps: 1,
            audit_page_max: 1000,
        }
    }
}

impl AdminConfig {
    /// Refuse settings that are out of range or inconsistent.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field and what to set instead.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, problem: String| Err(ConfigError::invalid(field, problem));
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad(
                "admin.tls_cert",
                "set both admin.tls_cert and admin.tls_key, or neither to reuse the gateway's server certificate".into(),
            );
        }
        if self.enabled {
            if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
                if !cert.is_file() {
                    return bad("admin.tls_cert", format!("{} is not a readable file; point it at the admin server's PEM certificate chain", cert.display()));
                }
                if !key.is_file() {
                    return bad("admin.tls_key", format!("{} is not a readable file; point it at the PEM private key of admin.tls_cert", key.display()));
                }
                // Fails closed: permissions that cannot be read are refused.
                if let Err(e) = wardgate_tls::keyfile::check_private(key) {
                    return bad("admin.tls_key", e.to_string());
                }
            }
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return bad(
                "admin.max_body_bytes",
                format!("{} is outside 1024..=16777216", self.max_body_bytes),
            );
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.request_timeout) {
            return bad(
                "admin.request_timeout",
                "must be between 1s and 300s".into(),
            );
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.handshake_timeout) {
            return bad(
                "admin.handshake_timeout",
                "must be between 1s and 60s".into(),
            );
        }
        if !(1..=4096).contains(&self.max_concurrent_requests) {
            return bad(
                "admin.max_concurrent_requests",
                "must be between 1 and 4096".into(),
            );
        }
        if !(1..=1440).contains(&self.break_glass_max_minutes) {
            return bad(
                "admin.break_glass_max_minutes",
                "must be between 1 and 1440 (one day)".into(),
            );
        }
        if !(1..=3650).contains(&self.stale_after_days) {
            return bad(
                "admin.stale_after_days",
                "must be between 1 and 3650".into(),
            );
        }
        if self.totp_skew_steps > 2 {
            return bad(
                "admin.totp_skew_steps",
                "must be 0, 1 or 2 (each step is 30s)".into(),
            );
        }
        if !(1..=100_000).contains(&self.audit_page_max) {
            return bad(
                "admin.audit_page_max",
                "must be between 1 and 100000".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = AdminConfig::default();
        c.validate().unwrap();
        assert!(c.bind.ip().is_loopback());
    }

    #[test]
    fn refuses_bad_fields_by_name() {
        let cases: Vec<(AdminConfig, &str)> = vec![
            (
                AdminConfig {
                    tls_cert: Some("a.pem".into()),
                    ..Default::default()
                },
                "admin.tls_cert",
            ),
            (
                AdminConfig {
                    max_body_bytes: 10,
                    ..Default::default()
                },
                "admin.max_body_bytes",
            ),
            (
                AdminConfig {
                    request_timeout: Duration::ZERO,
                    ..Default::default()
                },
                "admin.request_timeout",
            ),
            (
                AdminConfig {
                    totp_skew_steps: 5,
                    ..Default::default()
                },
                "admin.totp_skew_steps",
            ),
            (
                AdminConfig {
                    break_glass_max_minutes: 0,
                    ..Default::default()
                },
                "admin.break_glass_max_minutes",
            ),
        ];
        for (c, field) in cases {
            match c.validate() {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn parses_toml_with_humantime() {
        let c: AdminConfig = toml::from_str(
            "bind = \"127.0.0.1:0\"\nrequest_timeout = \"5s\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
        )
        .unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        // The files do not exist: refused, naming the field.
        assert!(
            matches!(c.validate(), Err(ConfigError::Invalid { field, .. }) if field == "admin.tls_cert")
        );
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "x").unwrap();
        std::fs::write(&key, "x").unwrap();
        let c = AdminConfig {
            tls_cert: Some(cert),
            tls_key: Some(key.clone()),
            ..c
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(
                matches!(c.validate(), Err(ConfigError::Invalid { field, .. }) if field == "admin.tls_key")
            );
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        c.validate().unwrap();
        assert!(toml::from_str::<AdminConfig>("bogus = 1").is_err());
    }
}
