//! The sections of the gateway's TOML file as plain serde structs, with
//! their safe defaults.
//!
//! Every component reads its section from here, and nothing here knows
//! about the components' behaviour. The one import from elsewhere is the OTA
//! agent's two plain settings structs ([`crate::config::OtaConfig`] for the
//! TUF client and image cache, [`crate::config::OtaRolloutConfig`] for
//! campaign execution and the image server), which [`OtaSection`] puts side
//! by side as the fields of one `[ota]` table. Whether a value is
//! acceptable is decided in one place, [`super::validate`], which turns a
//! [`Config`] into a [`super::ValidConfig`].
//!
//! Sections: `[storage]`, `[edge]`, `[broker]`, `[log]`, `[admin]`,
//! `[uplink]`, `[ota]` (absent: the OTA agent is off). A section still to
//! come (`[anomaly]`) is added here as one more field of [`Config`] and one
//! more struct.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wardgate_protocol::vitals::VitalKind;

/// The whole gateway configuration, as read (not yet validated).
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
    pub admin: AdminConfig,
    /// Store-and-forward uplink to the hospital broker.
    pub uplink: UplinkConfig,
    /// The OTA agent (TUF client, image cache, rollout, image server for
    /// devices); `None` when the file has no `[ota]` section: OTA is off.
    pub ota: Option<OtaSection>,
    /// Behavioural anomaly detection (its struct lives in [`super::anomaly`]).
    pub anomaly: super::anomaly::AnomalyConfig,
    /// Anchors of the audit chain.
    pub audit: AuditConfig,
}

/// `[audit]`: how the running gateway anchors its audit chain
/// ([`crate::audit::anchor`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// How often the chain head is signed and exported (1s to 24h).
    #[serde(with = "humantime_serde")]
    pub anchor_interval: Duration,
    /// The JSON-lines file anchors are appended to, for the operator to
    /// ship to a SIEM; default `<storage.data_dir>/audit-anchors.jsonl`.
    pub anchor_file: Option<PathBuf>,
    /// Also publish each anchor, retained, on
    /// `<uplink.topic_prefix>/audit/anchor` when the uplink is enabled.
    pub anchor_upstream: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            anchor_interval: Duration::from_secs(300),
            anchor_file: None,
            anchor_upstream: true,
        }
    }
}

impl AuditConfig {
    /// Where anchors are appended, for the gateway whose data lives in
    /// `storage`.
    #[must_use]
    pub fn anchor_path(&self, storage: &StorageConfig) -> PathBuf {
        self.anchor_file
            .clone()
            .unwrap_or_else(|| storage.data_dir.join("audit-anchors.jsonl"))
    }
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
    /// Address of the device listener (TLS only): the gateway's address on
    /// the device network. Loopback by default, so a fresh configuration
    /// exposes nothing until this is set.
    pub listen: SocketAddr,
    /// Allow `listen` to be a wildcard address (every interface); see
    /// [`super::bind_policy`].
    pub allow_wildcard_bind: bool,
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
    /// TLS handshakes done at once; later connections wait their turn
    /// (without their wait counting against `handshake_timeout`), so that a
    /// reconnect storm after a power cut does not starve established
    /// sessions of the CPU (`crate::edge::session`).
    pub max_concurrent_handshakes: usize,
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
    /// Refusals before authentication are summarised per peer address over
    /// this interval: the first audited at once, the rest in one row
    /// (`crate::edge::peer_refusals`).
    #[serde(with = "humantime_serde")]
    pub peer_refusal_interval: Duration,
    /// Refusals from one address in an interval after which its new
    /// connections are closed at accept until the interval ends.
    pub peer_refusals_before_throttle: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8883),
            allow_wildcard_bind: false,
            ca_cert: PathBuf::new(),
            server_cert: PathBuf::new(),
            server_key: PathBuf::new(),
            max_connections: 512,
            max_packet_bytes: 65_536,
            max_payload_bytes: 16_384,
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_handshakes: 16,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            rate_per_second: 50.0,
            rate_burst: 100,
            outbound_queue: 64,
            peer_refusal_interval: Duration::from_secs(60),
            peer_refusals_before_throttle: 100,
        }
    }
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// No longer used: the embedded broker has no listener (the edge's
    /// sessions are in-process pipes). Accepted so that older configs still
    /// load; the gateway logs a warning when it is set.
    pub bind: Option<IpAddr>,
    /// Most broker connections (edge sessions plus local links).
    pub max_connections: usize,
    /// Largest payload the broker accepts.
    pub max_payload_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            bind: None,
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
    /// `tracing` filter directive, e.g. `info` or `gateway=debug`; the
    /// `WARDGATE_LOG` variable, when set, takes precedence.
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

/// `[admin]`: the admin HTTPS API. Every field has a safe default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API at all.
    pub enabled: bool,
    /// Listen address; loopback by default (reach it through an SSH tunnel
    /// or a management VLAN).
    pub bind: SocketAddr,
    /// Allow `bind` to be a wildcard address (every interface); see
    /// [`super::bind_policy`].
    pub allow_wildcard_bind: bool,
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
    /// Sustained requests per second served to one client address
    /// (`crate::admin::peer_limit`); more are answered `429` with
    /// `Retry-After`, before the token is checked. The default leaves
    /// room for several ward consoles (about 3 requests a second each)
    /// behind one address, such as an SSH tunnel.
    pub requests_per_peer_per_second: u32,
    /// Requests one client address may send at once above the sustained
    /// rate (a console's page load and first poll, a script's burst).
    pub request_burst_per_peer: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 8443)),
            allow_wildcard_bind: false,
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
            requests_per_peer_per_second: 50,
            request_burst_per_peer: 200,
        }
    }
}

/// An upstream rendering, chosen per deployment in `uplink.formats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The device's JSON payload exactly as received.
    Json,
    /// One FHIR R4 `Observation` per vital sign (blood pressure as a panel).
    Fhir,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Fhir => "fhir",
        })
    }
}

/// What happens to new telemetry when the outbox is at its bound
/// (`uplink.full_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Refuse the new message; the edge tells the device (no PUBACK) and the
    /// device keeps it and retries. The default: nothing already stored is
    /// lost.
    #[default]
    Refuse,
    /// Delete the oldest non-critical messages to make room. Critical
    /// messages are never dropped; if only critical ones remain the new one
    /// is refused.
    DropOldest,
}

impl std::fmt::Display for FullPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Refuse => "refuse",
            Self::DropOldest => "drop_oldest",
        })
    }
}

/// `[uplink]`: store-and-forward to the hospital broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// Forward telemetry upstream. When false, the outbox still stores
    /// telemetry (bounded) but nothing is sent.
    pub enabled: bool,
    /// Upstream broker host name or address (must match its certificate).
    pub broker_host: String,
    /// Upstream broker TLS port.
    pub broker_port: u16,
    /// MQTT client id at the upstream broker.
    pub client_id: String,
    /// PEM CA bundle that signs the upstream broker's certificate.
    pub ca_file: PathBuf,
    /// PEM client certificate chain presented to the upstream broker.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`.
    pub key_file: PathBuf,
    /// Prefix of upstream topics: `<prefix>/devices/<id>/telemetry` (json)
    /// and `<prefix>/devices/<id>/fhir/Observation` (fhir).
    pub topic_prefix: String,
    /// Upstream renderings, each published for every message.
    pub formats: Vec<Format>,
    /// Most unacknowledged upstream publishes (MQTT inflight window): the
    /// upstream throughput is this over the round trip, and the most
    /// messages a link drop can deliver twice.
    pub max_inflight: u16,
    /// MQTT keep-alive.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// First reconnect delay; doubles per failure up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Cap of the reconnect delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Most messages kept in the outbox.
    pub outbox_max_rows: u64,
    /// Most sealed payload bytes kept in the outbox.
    pub outbox_max_bytes: u64,
    /// What to do with new telemetry when the outbox is full.
    pub full_policy: FullPolicy,
    /// Vital kinds that make a message critical: `drop_oldest` never drops
    /// a message carrying one of them.
    pub critical_kinds: Vec<VitalKind>,
    /// Outbox key file (base64, mode 0600), created on first start; the
    /// `WARDGATE_OUTBOX_KEY` variable takes precedence. Relative paths are
    /// resolved against the data directory.
    pub outbox_key_file: PathBuf,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            broker_host: String::new(),
            broker_port: 8883,
            client_id: "wardgate-gateway".into(),
            ca_file: PathBuf::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            topic_prefix: "wardgate/ward".into(),
            formats: vec![Format::Json, Format::Fhir],
            max_inflight: 4096,
            keep_alive: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            outbox_max_rows: 1_000_000,
            outbox_max_bytes: 512 * 1024 * 1024,
            full_policy: FullPolicy::Refuse,
            critical_kinds: vec![VitalKind::Spo2, VitalKind::HeartRate],
            outbox_key_file: PathBuf::from("outbox.key"),
        }
    }
}

/// `[ota]`: the OTA agent. One flat table holding the fields of two
/// structs: where the OTA server is and what the gateway trusts
/// ([`crate::config::OtaConfig`]: `server_url`, `trusted_root`, `ca_cert`,
/// `client_cert`, `client_key`, `refresh_interval`, ...) and how campaigns
/// run on the ward ([`crate::config::OtaRolloutConfig`]: `image_listen`,
/// `assignments_interval`, `device_*_timeout`, ...). A key neither knows is
/// kept in `unknown` and refused by validation, naming it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct OtaSection {
    /// TUF client and image cache settings.
    #[serde(flatten)]
    pub server: crate::config::OtaConfig,
    /// Campaign execution and image server settings.
    #[serde(flatten)]
    pub rollout: crate::config::OtaRolloutConfig,
    /// Keys that are no `[ota]` setting (refused by validation).
    #[serde(flatten)]
    pub unknown: BTreeMap<String, toml::Value>,
}
