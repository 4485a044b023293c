//! Gateway configuration: one TOML file, safe defaults, `WARDGATE_*`
//! environment overrides, and refusal to start on an invalid or insecure
//! setting with a message that names the field.
//!
//! | part | module |
//! | --- | --- |
//! | the sections as plain serde structs with defaults (a leaf: imports no other gateway module) | [`sections`] |
//! | reading the file and typing it | [`load`] |
//! | `WARDGATE_<SECTION>__<FIELD>` overrides | [`env`](mod@env) |
//! | every refusal, and [`ValidConfig`], the only way past them | [`validate`] |
//! | the `[ota]` fields of the TUF client and image cache | [`ota`](mod@ota) |
//! | the `[ota]` fields of the rollout (image server, timeouts) | [`ota_rollout`] |
//! | which network side each listener binds on; wildcard binds refused | [`bind_policy`] |
//! | [`ConfigError`] | [`error`] |
//!
//! The gateway reads and validates its file once ([`ValidConfig::load`]);
//! [`crate::Gateway::start`] and the components it starts take the
//! [`ValidConfig`] and read their section from it.

pub mod anomaly;
pub mod bind_policy;
pub mod env;
pub mod error;
pub mod load;
pub mod ota;
pub mod ota_rollout;
pub mod sections;
pub mod validate;

pub use anomaly::{AnomalyConfig, ResponseAction};
pub use error::{check_private, require_file, ConfigError};
pub use ota::OtaConfig;
pub use ota_rollout::{OtaRolloutConfig, Timeouts};
pub use sections::{
    AdminConfig, AuditConfig, BrokerConfig, Config, EdgeConfig, Format, FullPolicy, LogConfig,
    LogFormat, OtaSection, StorageConfig, UplinkConfig,
};
pub use validate::{IntoValidConfig, ValidConfig};
