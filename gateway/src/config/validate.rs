//! Every refusal of an invalid or insecure setting, in one place, and
//! [`ValidConfig`], the only way past them.
//!
//! [`Config::validate`] checks the whole file once and returns a
//! [`ValidConfig`]; [`crate::Gateway::start`] and the components it starts
//! take that, so none of them checks its section again. Each refusal is a
//! [`ConfigError::Invalid`] naming the dotted field (`edge.server_key`,
//! `admin.tls_key`, `uplink.broker_host`, ...) and what to set instead.

use std::path::Path;
use std::time::Duration;

use super::error::{check_private, require_file, within, ConfigError};
use super::sections::{AdminConfig, Config, EdgeConfig, OtaSection, UplinkConfig};

/// A configuration that passed [`Config::validate`]. It can only be built
/// there, so holding one proves every section was checked; it reads as a
/// [`Config`] (`Deref`).
#[derive(Debug, Clone)]
pub struct ValidConfig(Config);

impl std::ops::Deref for ValidConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.0
    }
}

impl ValidConfig {
    /// Read `path`, apply `WARDGATE_*` overrides from the process
    /// environment, and validate: what `gateway run` does, once.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, variable or field at fault.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Config::load(path)?.validate()
    }

    /// The plain configuration again (to change it and validate anew).
    #[must_use]
    pub fn into_inner(self) -> Config {
        self.0
    }
}

/// What [`crate::Gateway::start`] and [`crate::GatewayContext::open`] take:
/// a [`ValidConfig`] as it is, or a [`Config`], validated there (once).
pub trait IntoValidConfig {
    /// The validated configuration.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first field at fault.
    fn into_valid(self) -> Result<ValidConfig, ConfigError>;
}

impl IntoValidConfig for ValidConfig {
    fn into_valid(self) -> Result<ValidConfig, ConfigError> {
        Ok(self)
    }
}

impl IntoValidConfig for Config {
    fn into_valid(self) -> Result<ValidConfig, ConfigError> {
        self.validate()
    }
}

impl Config {
    /// Refuse invalid or insecure settings; what passes is a [`ValidConfig`].
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first field at fault.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        self.check_edge()?;
        super::bind_policy::check_listeners(&self)?;
        self.check_broker()?;
        self.admin.validate()?;
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("storage.data_dir", "must be set"));
        }
        self.uplink.validate()?;
        if let Some(ota) = &self.ota {
            ota.validate(&self.edge)?;
        }
        self.anomaly.validate()?;
        within(
            "audit.anchor_interval",
            &self.audit.anchor_interval,
            Duration::from_secs(1)..=Duration::from_secs(24 * 3600),
            "1s and 24h",
        )?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::invalid(
                "log.level",
                format!(
                    "is not a tracing filter directive ({e}); use e.g. `info` or `gateway=debug`"
                ),
            ));
        }
        Ok(ValidConfig(self))
    }

    fn check_edge(&self) -> Result<(), ConfigError> {
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
        if e.max_concurrent_handshakes == 0 || e.max_concurrent_handshakes > 4096 {
            return Err(ConfigError::invalid(
                "edge.max_concurrent_handshakes",
                "must be between 1 and 4096 (16 keeps two cores busy)",
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
        within(
            "edge.peer_refusal_interval",
            &e.peer_refusal_interval,
            Duration::from_secs(1)..=Duration::from_secs(3600),
            "1s and 1h",
        )?;
        within(
            "edge.peer_refusals_before_throttle",
            &e.peer_refusals_before_throttle,
            1..=1_000_000,
            "1 and 1000000",
        )?;
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
        Ok(())
    }

    fn check_broker(&self) -> Result<(), ConfigError> {
        if self.broker.max_connections <= self.edge.max_connections {
            return Err(ConfigError::invalid(
                "broker.max_connections",
                "must exceed edge.max_connections (local links need room too)",
            ));
        }
        Ok(())
    }
}

impl OtaSection {
    /// Refuse an `[ota]` section that is incomplete, insecure or out of
    /// range. A present section turns the OTA agent on, so it must name the
    /// OTA server; the image server must not take the edge's address.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the `ota.*` field at fault.
    pub fn validate(&self, edge: &EdgeConfig) -> Result<(), ConfigError> {
        if let Some(key) = self.unknown.keys().next() {
            return Err(ConfigError::invalid(
                format!("ota.{key}"),
                "is not a setting of the [ota] section; check the spelling against docs/ota.md",
            ));
        }
        if !self.server.enabled() {
            return Err(ConfigError::invalid(
                "ota.server_url",
                "is missing: an [ota] section turns the OTA agent on, so set it to the OTA server, e.g. \"https://ota.hospital.example:8443/\", or remove the [ota] section to run without OTA updates",
            ));
        }
        self.server.validate()?;
        self.rollout
            .validate()
            .map_err(|e| ConfigError::invalid(format!("ota.{}", e.field), e.reason))?;
        if let Some(listen) = self.rollout.image_listen {
            if listen.port() != 0 && listen == edge.listen {
                return Err(ConfigError::invalid(
                    "ota.image_listen",
                    format!(
                        "is {listen}, the address of edge.listen: the image server needs its own port on the device side, e.g. {}:8444",
                        listen.ip()
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl AdminConfig {
    /// Refuse `[admin]` settings that are out of range or inconsistent.
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
                check_private("admin.tls_key", key)?;
            }
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return bad(
                "admin.max_body_bytes",
                format!("{} is outside 1024..=16777216", self.max_body_bytes),
            );
        }
        within(
            "admin.request_timeout",
            &self.request_timeout,
            Duration::from_secs(1)..=Duration::from_secs(300),
            "1s and 300s",
        )?;
        within(
            "admin.handshake_timeout",
            &self.handshake_timeout,
            Duration::from_secs(1)..=Duration::from_secs(60),
            "1s and 60s",
        )?;
        within(
            "admin.max_concurrent_requests",
            &self.max_concurrent_requests,
            1..=4096,
            "1 and 4096",
        )?;
        within(
            "admin.break_glass_max_minutes",
            &self.break_glass_max_minutes,
            1..=1440,
            "1 and 1440 (one day)",
        )?;
        within(
            "admin.stale_after_days",
            &self.stale_after_days,
            1..=3650,
            "1 and 3650",
        )?;
        if self.totp_skew_steps > 2 {
            return bad(
                "admin.totp_skew_steps",
                "must be 0, 1 or 2 (each step is 30s)".into(),
            );
        }
        within(
            "admin.audit_page_max",
            &self.audit_page_max,
            1..=100_000,
            "1 and 100000",
        )?;
        within(
            "admin.requests_per_peer_per_second",
            &self.requests_per_peer_per_second,
            1..=10_000,
            "1 and 10000 (requests a second from one client address; \
             the ward console needs about 3)",
        )?;
        within(
            "admin.request_burst_per_peer",
            &self.request_burst_per_peer,
            1..=100_000,
            "1 and 100000 (requests one client address may send at once)",
        )?;
        Ok(())
    }
}

impl UplinkConfig {
    /// Refuse invalid or insecure `[uplink]` settings, naming the field.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first bad field (`uplink.<field>`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: &str| {
            Err(ConfigError::invalid(format!("uplink.{field}"), reason))
        };
        if self.outbox_max_rows == 0 {
            return bad("outbox_max_rows", "must be at least 1");
        }
        if self.outbox_max_bytes < 4096 {
            return bad("outbox_max_bytes", "must be at least 4096");
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return bad(
                "backoff_initial",
                "must be > 0 and not above uplink.backoff_max",
            );
        }
        if self.topic_prefix.is_empty()
            || self.topic_prefix.contains(['#', '+', '\0'])
            || self.topic_prefix.starts_with('/')
            || self.topic_prefix.ends_with('/')
        {
            return bad(
                "topic_prefix",
                "must be a non-empty MQTT topic without wildcards or leading/trailing '/'",
            );
        }
        if !self.enabled {
            return Ok(());
        }
        if self.broker_host.is_empty() {
            return bad("broker_host", "required when uplink.enabled = true");
        }
        if self.broker_port == 0 {
            return bad("broker_port", "must not be 0");
        }
        if self.client_id.is_empty() || self.client_id.len() > 128 {
            return bad("client_id", "must be 1..=128 characters");
        }
        if self.formats.is_empty() {
            return bad("formats", "list at least one of \"json\", \"fhir\"");
        }
        if self.max_inflight == 0 {
            return bad("max_inflight", "must be at least 1");
        }
        for (field, path) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if path.as_os_str().is_empty() {
                return bad(
                    field,
                    "required when uplink.enabled = true (TLS with a client certificate is mandatory)",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use wardgate_protocol::vitals::VitalKind;

    use super::*;
    use crate::config::sections::{Format, FullPolicy};

    // control: segmentation
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
        let err = c.clone().validate().unwrap_err().to_string();
        assert!(err.contains("edge.ca_cert"), "{err}");
        c.edge.ca_cert = ca;
        c.edge.server_cert = cert;
        c.edge.server_key = key.clone();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = c.clone().validate().unwrap_err().to_string();
            assert!(
                err.contains("edge.server_key") && err.contains("chmod 600"),
                "{err}"
            );
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        c.validate().unwrap();
    }

    #[test]
    fn admin_defaults_are_valid_and_loopback() {
        let c = AdminConfig::default();
        c.validate().unwrap();
        assert!(c.bind.ip().is_loopback());
    }

    #[test]
    fn admin_refuses_bad_fields_by_name() {
        // Each case is one bad field over the defaults, as an operator
        // would write it in the `[admin]` table.
        let cases = [
            ("tls_cert = \"a.pem\"", "admin.tls_cert"),
            ("max_body_bytes = 10", "admin.max_body_bytes"),
            ("request_timeout = \"0s\"", "admin.request_timeout"),
            ("totp_skew_steps = 5", "admin.totp_skew_steps"),
            (
                "break_glass_max_minutes = 0",
                "admin.break_glass_max_minutes",
            ),
            (
                "requests_per_peer_per_second = 0",
                "admin.requests_per_peer_per_second",
            ),
            (
                "requests_per_peer_per_second = 10001",
                "admin.requests_per_peer_per_second",
            ),
            ("request_burst_per_peer = 0", "admin.request_burst_per_peer"),
        ];
        for (line, field) in cases {
            let c: AdminConfig = toml::from_str(line).unwrap();
            match c.validate() {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn admin_parses_toml_with_humantime() {
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

    #[test]
    fn uplink_defaults_are_valid_refuse_and_disabled() {
        let c = UplinkConfig::default();
        c.validate().unwrap();
        assert!(!c.enabled);
        assert_eq!(c.full_policy, FullPolicy::Refuse);
    }

    #[test]
    fn uplink_documented_example_parses() {
        let doc = include_str!("../../../docs/uplink.md");
        let start = doc.find("```toml\n[uplink]\n").unwrap() + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let table: toml::Table = doc[start..end].parse().unwrap();
        let c: UplinkConfig = table["uplink"].clone().try_into().unwrap();
        assert!(c.enabled);
        assert_eq!(c.formats, vec![Format::Json, Format::Fhir]);
        assert_eq!(
            c.critical_kinds,
            vec![VitalKind::Spo2, VitalKind::HeartRate]
        );
        c.validate().unwrap();
    }

    #[test]
    fn uplink_refuses_bad_settings_naming_the_field() {
        let enabled = UplinkConfig {
            enabled: true,
            broker_host: "mqtt.example".into(),
            ca_file: "ca.pem".into(),
            cert_file: "c.pem".into(),
            key_file: "c.key".into(),
            ..UplinkConfig::default()
        };
        enabled.validate().unwrap();
        let cases: Vec<(&str, UplinkConfig)> = vec![
            (
                "broker_host",
                UplinkConfig {
                    broker_host: String::new(),
                    ..enabled.clone()
                },
            ),
            (
                "key_file",
                UplinkConfig {
                    key_file: PathBuf::new(),
                    ..enabled.clone()
                },
            ),
            (
                "topic_prefix",
                UplinkConfig {
                    topic_prefix: "ward/#".into(),
                    ..enabled.clone()
                },
            ),
            (
                "formats",
                UplinkConfig {
                    formats: vec![],
                    ..enabled.clone()
                },
            ),
            (
                "outbox_max_rows",
                UplinkConfig {
                    outbox_max_rows: 0,
                    ..enabled.clone()
                },
            ),
            (
                "max_inflight",
                UplinkConfig {
                    max_inflight: 0,
                    ..enabled.clone()
                },
            ),
            (
                "backoff_initial",
                UplinkConfig {
                    backoff_max: Duration::from_millis(1),
                    ..enabled.clone()
                },
            ),
        ];
        for (field, c) in cases {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("uplink.{field}")), "{field}: {err}");
        }
    }

    #[test]
    fn uplink_unknown_fields_and_policies_are_refused() {
        let bad: Result<UplinkConfig, _> = toml::from_str("full_policy = \"drop_newest\"");
        assert!(bad.is_err());
        let bad: Result<UplinkConfig, _> = toml::from_str("brokerhost = \"x\"");
        assert!(bad.unwrap_err().to_string().contains("brokerhost"));
    }

    /// A configuration whose edge files exist (key 0600), in `dir`.
    fn with_edge_files(dir: &Path) -> Config {
        let mut c = Config::default();
        for (field, name) in [
            (&mut c.edge.ca_cert, "ca.pem"),
            (&mut c.edge.server_cert, "cert.pem"),
            (&mut c.edge.server_key, "key.pem"),
        ] {
            *field = dir.join(name);
            std::fs::write(&*field, "x").unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&c.edge.server_key, std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        c
    }

    #[test]
    fn a_log_level_that_is_not_a_filter_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = with_edge_files(dir.path());
        c.clone().validate().unwrap();
        c.log.level = "gateway=loud".into();
        match c.validate() {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "log.level"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_config_is_validated_and_a_valid_one_passes_through() {
        assert!(matches!(
            Config::default().into_valid(),
            Err(ConfigError::Invalid { field, .. }) if field == "edge.ca_cert"
        ));
        let dir = tempfile::tempdir().unwrap();
        let mut c = with_edge_files(dir.path());
        c.edge.rate_burst = 3;
        let valid = c.into_valid().unwrap();
        assert_eq!(valid.edge.rate_burst, 3, "reads as the config it holds");
        let again = valid.into_valid().unwrap();
        let mut plain = again.into_inner();
        plain.uplink.outbox_max_rows = 0;
        assert!(matches!(
            plain.into_valid(),
            Err(ConfigError::Invalid { field, .. }) if field == "uplink.outbox_max_rows"
        ));
    }

    /// An `[ota]` section with every file in place, from TOML (`extra` may
    /// name its own `image_listen`).
    fn with_ota(dir: &Path, extra: &str) -> Result<ValidConfig, ConfigError> {
        let root = dir.join("root.json");
        std::fs::write(&root, r#"{"signed":{"_type":"root"},"signatures":[]}"#).unwrap();
        let mut c = with_edge_files(dir);
        let text = format!(
            "[ota]\nserver_url = \"https://ota.example:8443\"\ntrusted_root = {root:?}\nca_cert = {ca:?}\nclient_cert = {cert:?}\nclient_key = {key:?}\n{listen}assignments_interval = \"10s\"\n{extra}",
            listen = if extra.contains("image_listen") {
                ""
            } else {
                "image_listen = \"10.20.0.1:8444\"\n"
            },
            root = root.display().to_string(),
            ca = c.edge.ca_cert.display().to_string(),
            cert = c.edge.server_cert.display().to_string(),
            key = c.edge.server_key.display().to_string(),
        );
        c.ota = Config::from_toml_with_env(&text, "test", [])?.ota;
        c.validate()
    }

    fn refused_field(r: Result<ValidConfig, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn ota_is_off_without_the_section_and_one_flat_table_when_present() {
        let dir = tempfile::tempdir().unwrap();
        assert!(with_edge_files(dir.path())
            .validate()
            .unwrap()
            .ota
            .is_none());
        let v = with_ota(
            dir.path(),
            "device_max_offers = 3\nrefresh_interval = \"2m\"\n",
        )
        .unwrap();
        let ota = v.ota.as_ref().unwrap();
        assert_eq!(ota.server.refresh_interval, Duration::from_secs(120));
        assert_eq!(ota.rollout.assignments_interval, Duration::from_secs(10));
        assert_eq!(ota.rollout.device_max_offers, 3);
        assert_eq!(
            ota.rollout.image_listen,
            Some("10.20.0.1:8444".parse().unwrap())
        );
    }

    #[test]
    fn ota_refusals_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            refused_field(with_ota(d, "image_lsten = \"x\"\n")),
            "ota.image_lsten"
        );
        assert_eq!(
            refused_field(with_ota(d, "device_max_offers = 0\n")),
            "ota.device_max_offers"
        );
        assert_eq!(
            refused_field(with_ota(d, "refresh_interval = \"1s\"\n")),
            "ota.refresh_interval"
        );
        let mut c = with_edge_files(d);
        c.ota = Some(OtaSection::default());
        assert_eq!(refused_field(c.validate()), "ota.server_url");
        // The rollout's own fields are named under `ota.` too.
        let mut v = with_ota(d, "").unwrap().into_inner();
        if let Some(ota) = v.ota.as_mut() {
            ota.rollout.image_listen = Some("0.0.0.0:8444".parse().unwrap());
        }
        assert_eq!(refused_field(v.clone().validate()), "ota.image_listen");
        if let Some(ota) = v.ota.as_mut() {
            ota.rollout.image_listen = Some(v.edge.listen);
            ota.rollout.allow_wildcard_bind = true;
        }
        assert_eq!(refused_field(v.validate()), "ota.image_listen");
    }

    // control: segmentation
    #[test]
    fn a_wildcard_image_server_is_refused_at_start_up_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let wildcard = "image_listen = \"0.0.0.0:8444\"\n";
        let err = with_ota(d, wildcard).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, ConfigError::Invalid { field, .. } if field == "ota.image_listen"),
            "{text}"
        );
        assert!(
            text.contains("wildcard") && text.contains("ota.allow_wildcard_bind = true"),
            "{text}"
        );
        // Allowed by the section's flag, under its name or its former one
        // (configuration files written before the bind policy covered it).
        for flag in ["allow_wildcard_bind", "image_allow_wildcard"] {
            let v = with_ota(d, &format!("{wildcard}{flag} = true\n")).unwrap();
            let ota = v.ota.as_ref().unwrap();
            assert!(ota.rollout.allow_wildcard_bind, "{flag}");
            assert!(ota.unknown.is_empty(), "{flag}: {:?}", ota.unknown);
        }
        // The device-side address needs no flag.
        let v = with_ota(d, "image_listen = \"10.20.0.1:8444\"\n").unwrap();
        assert!(!v.ota.as_ref().unwrap().rollout.allow_wildcard_bind);
    }
}
