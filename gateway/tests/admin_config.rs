//! The `[admin]` section inside the gateway's one config file: TOML and
//! `WARDGATE_ADMIN__*` overrides reach it, and an invalid admin setting
//! stops the whole gateway config with the field named.

mod support;

use std::time::Duration;

use gateway::config::ConfigError;
use gateway::Config;

#[test]
fn admin_section_parses_with_env_overrides() {
    let text =
        "[admin]\nbind = \"127.0.0.1:9443\"\nrequest_timeout = \"5s\"\nstale_after_days = 30\n";
    let env = vec![
        (
            "WARDGATE_ADMIN__MAX_BODY_BYTES".to_owned(),
            "4096".to_owned(),
        ),
        ("WARDGATE_ADMIN__TOTP_SKEW_STEPS".to_owned(), "0".to_owned()),
    ];
    let config = Config::from_toml_with_env(text, "test.toml", env).unwrap();
    assert_eq!(config.admin.bind, "127.0.0.1:9443".parse().unwrap());
    assert_eq!(config.admin.request_timeout, Duration::from_secs(5));
    assert_eq!(config.admin.stale_after_days, 30);
    assert_eq!(config.admin.max_body_bytes, 4096);
    assert_eq!(config.admin.totp_skew_steps, 0);
    assert!(config.admin.enabled, "on by default");

    let err = Config::from_toml_with_env("[admin]\nbindd = \"x\"\n", "test.toml", Vec::new())
        .unwrap_err();
    assert!(err.to_string().contains("bindd"), "{err}");
}

#[test]
fn invalid_admin_settings_refuse_the_whole_config_by_field() {
    let pki = support::TestPki::new();
    let base = format!(
        "[storage]\ndata_dir = {:?}\n[edge]\nca_cert = {:?}\nserver_cert = {:?}\nserver_key = {:?}\n",
        pki.dir.path().join("data"),
        pki.ca_path,
        pki.server_cert,
        pki.server_key
    );
    let ok = Config::from_toml_with_env(&base, "t", Vec::new()).unwrap();
    ok.validate().unwrap();
    for (extra, field) in [
        ("[admin]\ntotp_skew_steps = 7\n", "admin.totp_skew_steps"),
        ("[admin]\nmax_body_bytes = 1\n", "admin.max_body_bytes"),
        ("[admin]\ntls_cert = \"/nonexistent/admin.pem\"\n", "admin.tls_cert"),
        (
            "[admin]\ntls_cert = \"/nonexistent/admin.pem\"\ntls_key = \"/nonexistent/admin.key\"\n",
            "admin.tls_cert",
        ),
    ] {
        let config = Config::from_toml_with_env(&format!("{base}{extra}"), "t", Vec::new()).unwrap();
        match config.validate() {
            Err(ConfigError::Invalid { field: f, reason }) => {
                assert_eq!(f, field, "{reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("{field}: expected refusal, got {other:?}"),
        }
    }
}
