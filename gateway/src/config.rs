//! Gateway configuration: one TOML file, safe defaults, `WARDGATE_*`
//! environment overrides, and refusal to start on an invalid or insecure
//! setting with a message that names the field.
//!
//! Each section's type lives with the component it configures
//! ([`crate::admin::AdminConfig`], [`crate::uplink::UplinkConfig`], ...);
//! this module assembles and validates the whole.
