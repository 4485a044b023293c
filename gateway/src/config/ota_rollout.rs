//! The rollout's settings: the image server for devices (its own
//! device-facing listener), how often the gateway asks the OTA server for
//! assignments, and how long each device update state may wait.
//!
//! These are fields of the `[ota]` section, kept in their own struct until
//! the section is assembled in one place; every field has a safe default
//! except `ota.image_listen`, which must name the device-side address as
//! `edge.listen` does. Where it may bind is the start-up bind policy's
//! ([`crate::config::bind_policy`]): a device-facing listener, so a
//! wildcard is refused unless `ota.allow_wildcard_bind` is set (its former
//! name `ota.image_allow_wildcard` is still read).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long each waiting state may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// `pending`: the device has not been seen idle while the campaign
    /// could proceed (offline, or in a fault) -> `failed`.
    #[serde(with = "humantime_serde")]
    pub pending: Duration,
    /// `offered`: no report since the last offer -> offer again, up to
    /// `max_offers`, then `failed`.
    #[serde(with = "humantime_serde")]
    pub offered: Duration,
    /// `downloading`: no progress (report or image bytes) -> offer again
    /// (the device resumes), up to `max_offers`, then `failed`.
    #[serde(with = "humantime_serde")]
    pub downloading: Duration,
    /// `installed`: no health report -> `healthy` if the device's latest
    /// status shows the target running, else `failed`.
    #[serde(with = "humantime_serde")]
    pub installed: Duration,
    /// `deferred`: therapy still in progress -> `failed` (an operator may
    /// retry later).
    #[serde(with = "humantime_serde")]
    pub deferred: Duration,
    /// A device's new status re-sends a pending offer (it reconnected)
    /// only if the last offer is at least this old.
    #[serde(with = "humantime_serde")]
    pub reoffer_after: Duration,
    /// Offers per attempt before an unresponsive device is `failed`.
    pub max_offers: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            pending: Duration::from_secs(24 * 3600),
            offered: Duration::from_secs(5 * 60),
            downloading: Duration::from_secs(30 * 60),
            installed: Duration::from_secs(20 * 60),
            deferred: Duration::from_secs(24 * 3600),
            reoffer_after: Duration::from_secs(10),
            max_offers: 5,
        }
    }
}

/// Why the rollout settings are refused; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting ota.{field}: {reason}")]
pub struct RolloutConfigError {
    /// The field (under `ota.`).
    pub field: &'static str,
    /// What to change.
    pub reason: String,
}

/// Settings of campaign execution and of the image server for devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtaRolloutConfig {
    /// Device-side address of the image server (HTTPS, mutual TLS with the
    /// ward device CA of `edge.ca_cert`, the gateway's `edge.server_cert`).
    pub image_listen: Option<SocketAddr>,
    /// Allow `image_listen` to be a wildcard address (every interface); see
    /// [`crate::config::bind_policy`]. Read under its former name
    /// `image_allow_wildcard` too, so existing files keep their meaning.
    #[serde(alias = "image_allow_wildcard")]
    pub allow_wildcard_bind: bool,
    /// Base URL devices download from, e.g. `https://gw-3a.ward.local:8444`;
    /// must match a name in the server certificate. Default: `https://` and
    /// the bound address.
    pub image_url: Option<String>,
    /// Image downloads served at once; more get `503` with `Retry-After`.
    pub image_max_downloads: usize,
    /// Connections held open at once (downloading or not); more are closed
    /// at once.
    pub image_max_connections: usize,
    /// `Retry-After` sent with a `503`.
    #[serde(with = "humantime_serde")]
    pub image_retry_after: Duration,
    /// Time a device has to complete the TLS handshake.
    #[serde(with = "humantime_serde")]
    pub image_handshake_timeout: Duration,
    /// How often the inventory is reported and assignments fetched (also
    /// on demand).
    #[serde(with = "humantime_serde")]
    pub assignments_interval: Duration,
    /// How often device timeouts are checked.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// A device assigned but not seen idle for this long fails.
    #[serde(with = "humantime_serde")]
    pub device_pending_timeout: Duration,
    /// No report this long after an offer: offer again.
    #[serde(with = "humantime_serde")]
    pub device_offer_timeout: Duration,
    /// No download progress this long: offer again (the device resumes).
    #[serde(with = "humantime_serde")]
    pub device_download_timeout: Duration,
    /// Installed but no health report this long: decide from its status.
    #[serde(with = "humantime_serde")]
    pub device_install_timeout: Duration,
    /// Therapy in progress this long: the device fails (retry later).
    #[serde(with = "humantime_serde")]
    pub device_deferred_timeout: Duration,
    /// A reconnecting device is offered again if the last offer is older.
    #[serde(with = "humantime_serde")]
    pub device_reoffer_after: Duration,
    /// Offers per attempt before an unresponsive device fails.
    pub device_max_offers: u32,
}

impl Default for OtaRolloutConfig {
    fn default() -> Self {
        let t = Timeouts::default();
        Self {
            image_listen: None,
            allow_wildcard_bind: false,
            image_url: None,
            image_max_downloads: 16,
            image_max_connections: 256,
            image_retry_after: Duration::from_secs(5),
            image_handshake_timeout: Duration::from_secs(10),
            assignments_interval: Duration::from_secs(30),
            tick_interval: Duration::from_secs(5),
            device_pending_timeout: t.pending,
            device_offer_timeout: t.offered,
            device_download_timeout: t.downloading,
            device_install_timeout: t.installed,
            device_deferred_timeout: t.deferred,
            device_reoffer_after: t.reoffer_after,
            device_max_offers: t.max_offers,
        }
    }
}

impl OtaRolloutConfig {
    /// The device timeouts.
    #[must_use]
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            pending: self.device_pending_timeout,
            offered: self.device_offer_timeout,
            downloading: self.device_download_timeout,
            installed: self.device_install_timeout,
            deferred: self.device_deferred_timeout,
            reoffer_after: self.device_reoffer_after,
            max_offers: self.device_max_offers,
        }
    }

    /// Check the settings (call when OTA is enabled).
    ///
    /// # Errors
    /// [`RolloutConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), RolloutConfigError> {
        let bad = |field, reason: &str| {
            Err(RolloutConfigError {
                field,
                reason: reason.to_owned(),
            })
        };
        // Which side it binds on is checked with every other listener
        // (`bind_policy::check_listeners`), not here.
        if self.image_listen.is_none() {
            return bad(
                "image_listen",
                "required when OTA is enabled: the device-side address devices download images from, e.g. \"10.20.0.1:8444\"",
            );
        }
        if let Some(url) = &self.image_url {
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "https" && u.host().is_some() && u.query().is_none() => {}
                _ => {
                    return bad(
                        "image_url",
                        "must be an https:// URL with a host and no query, e.g. \"https://gw-3a.ward.local:8444\"",
                    )
                }
            }
        }
        if self.image_max_downloads == 0 || self.image_max_downloads > 10_000 {
            return bad("image_max_downloads", "must be 1 to 10000");
        }
        if self.image_max_connections < self.image_max_downloads
            || self.image_max_connections > 100_000
        {
            return bad(
                "image_max_connections",
                "must be at least ota.image_max_downloads and at most 100000",
            );
        }
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        for (field, d, min, max) in [
            ("image_retry_after", self.image_retry_after, s(1), s(3600)),
            (
                "image_handshake_timeout",
                self.image_handshake_timeout,
                ms(100),
                s(300),
            ),
            (
                "assignments_interval",
                self.assignments_interval,
                ms(100),
                s(24 * 3600),
            ),
            ("tick_interval", self.tick_interval, ms(100), s(3600)),
            (
                "device_offer_timeout",
                self.device_offer_timeout,
                s(1),
                s(24 * 3600),
            ),
            (
                "device_download_timeout",
                self.device_download_timeout,
                s(1),
                s(7 * 24 * 3600),
            ),
            (
                "device_install_timeout",
                self.device_install_timeout,
                s(1),
                s(7 * 24 * 3600),
            ),
            (
                "device_pending_timeout",
                self.device_pending_timeout,
                s(1),
                s(30 * 24 * 3600),
            ),
            (
                "device_deferred_timeout",
                self.device_deferred_timeout,
                s(1),
                s(30 * 24 * 3600),
            ),
            (
                "device_reoffer_after",
                self.device_reoffer_after,
                ms(100),
                s(3600),
            ),
        ] {
            if d < min || d > max {
                return Err(RolloutConfigError {
                    field,
                    reason: format!(
                        "must be between {} and {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                });
            }
        }
        if self.device_max_offers == 0 || self.device_max_offers > 100 {
            return bad("device_max_offers", "must be 1 to 100");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_a_listen_address() {
        let mut c = OtaRolloutConfig::default();
        assert_eq!(c.validate().unwrap_err().field, "image_listen");
        c.image_listen = Some("10.20.0.1:8444".parse().unwrap());
        c.validate().unwrap();
        c.image_url = Some("http://gw.local".into());
        assert_eq!(c.validate().unwrap_err().field, "image_url");
        c.image_url = Some("https://gw.local:8444".into());
        c.validate().unwrap();
        c.image_max_connections = 1;
        assert_eq!(c.validate().unwrap_err().field, "image_max_connections");
    }

    #[test]
    fn parses_from_toml_with_durations() {
        let c: OtaRolloutConfig = toml::from_str(
            "image_listen = \"127.0.0.1:8444\"\ndevice_offer_timeout = \"90s\"\ndevice_max_offers = 3\n",
        )
        .unwrap();
        assert_eq!(c.timeouts().offered, Duration::from_secs(90));
        assert_eq!(c.timeouts().max_offers, 3);
        assert!(toml::from_str::<OtaRolloutConfig>("image_lsten = \"x\"").is_err());
    }

    #[test]
    fn the_former_wildcard_key_is_read_as_allow_wildcard_bind() {
        for key in ["allow_wildcard_bind", "image_allow_wildcard"] {
            let c: OtaRolloutConfig = toml::from_str(&format!("{key} = true\n")).unwrap();
            assert!(c.allow_wildcard_bind, "{key}");
        }
        assert!(!OtaRolloutConfig::default().allow_wildcard_bind);
    }
}
