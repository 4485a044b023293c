//! Which network side each listener binds on, and the refusal of binds
//! that would put a listener on the wrong side.
//!
//! A ward gateway sits between the device network and hospital IT. Each
//! listener belongs to one side: the device edge and the OTA image server
//! (`ota.image_listen`) to the device network, the admin API (and the ward
//! console) to the management network; the embedded broker is on loopback
//! (checked in [`super::validate`]). A wildcard bind (`0.0.0.0`, `::`)
//! listens on every interface, so a device-facing listener would also be
//! reachable from hospital IT and a management listener from the devices.
//! Start-up therefore refuses it unless the listener's section sets
//! `allow_wildcard_bind = true` (for a host whose only interface is one
//! side, or a container whose port mapping does the binding). A management
//! listener on the same non-loopback address as a device-facing one is on
//! the device network and is refused too.
//!
//! [`check_bind`] is the one rule; [`check_listeners`] lists every
//! listener of the configuration, one line each, so a new listener is one
//! more line there.

use std::net::{IpAddr, SocketAddr};

use super::error::ConfigError;
use super::sections::Config;

/// The network side a listener belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The device network: what bedside devices connect to.
    Device,
    /// The management network: operators and hospital IT tools.
    Management,
}

impl Side {
    fn describe(self) -> &'static str {
        match self {
            Self::Device => "a device-facing listener: bind it to the gateway's address on the device network",
            Self::Management => "a management listener: bind it to loopback or to the gateway's address on the management network",
        }
    }
}

/// The field that allows a wildcard bind for the listener `field`: the
/// `allow_wildcard_bind` of the same section (`edge.listen` ->
/// `edge.allow_wildcard_bind`, `ota.image_listen` ->
/// `ota.allow_wildcard_bind`).
#[must_use]
pub fn allow_field(field: &str) -> String {
    let section = field.split_once('.').map_or(field, |(section, _)| section);
    format!("{section}.allow_wildcard_bind")
}

fn is_wildcard(ip: IpAddr) -> bool {
    ip.to_canonical().is_unspecified()
}

/// Refuse a wildcard `addr` for the listener `field` on `side`, unless
/// `allow_wildcard` (the section's `allow_wildcard_bind`) is set.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `field`, the side, and the
/// `allow_wildcard_bind` field to set if the wildcard is intended.
pub fn check_bind(
    field: &str,
    addr: SocketAddr,
    side: Side,
    allow_wildcard: bool,
) -> Result<(), ConfigError> {
    if is_wildcard(addr.ip()) && !allow_wildcard {
        return Err(ConfigError::invalid(
            field,
            format!(
                "is {addr}, a wildcard address that listens on every network the gateway is on; it is {}, or set `{} = true` if every interface of this host is on that side",
                side.describe(),
                allow_field(field),
            ),
        ));
    }
    Ok(())
}

/// Every listener of `config` with its side; each is checked with
/// [`check_bind`], and no management listener may share a non-loopback
/// address with a device-facing one.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the first listener at fault.
pub fn check_listeners(config: &Config) -> Result<(), ConfigError> {
    let mut listeners = vec![(
        "edge.listen",
        config.edge.listen,
        Side::Device,
        config.edge.allow_wildcard_bind,
    )];
    if config.admin.enabled {
        listeners.push((
            "admin.bind",
            config.admin.bind,
            Side::Management,
            config.admin.allow_wildcard_bind,
        ));
    }
    // The image server exists only with an `[ota]` section; a section
    // without `image_listen` is refused by its own validation.
    if let Some((ota, addr)) = config
        .ota
        .as_ref()
        .and_then(|ota| Some((ota, ota.rollout.image_listen?)))
    {
        listeners.push((
            "ota.image_listen",
            addr,
            Side::Device,
            ota.rollout.allow_wildcard_bind,
        ));
    }
    for &(field, addr, side, allow) in &listeners {
        check_bind(field, addr, side, allow)?;
    }
    for &(field, addr, side, _) in &listeners {
        if side != Side::Management || addr.ip().is_loopback() || is_wildcard(addr.ip()) {
            continue;
        }
        let shared = listeners.iter().find(|(_, other, other_side, _)| {
            *other_side == Side::Device && other.ip().to_canonical() == addr.ip().to_canonical()
        });
        if let Some((device_field, ..)) = shared {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "is on {}, the device-network address of `{device_field}`: devices could reach it; bind it to loopback or to the gateway's management address",
                    addr.ip()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: ConfigError) -> (String, String) {
        match e {
            ConfigError::Invalid { field, reason } => (field, reason),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    // control: segmentation
    #[test]
    fn wildcards_are_refused_naming_the_field_and_the_flag() {
        for addr in ["0.0.0.0:8883", "[::]:8883", "[::ffff:0.0.0.0]:8883"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let (field, reason) =
                field_of(check_bind("edge.listen", addr, Side::Device, false).unwrap_err());
            assert_eq!(field, "edge.listen");
            assert!(
                reason.contains("edge.allow_wildcard_bind = true"),
                "{reason}"
            );
            assert!(reason.contains("device network"), "{reason}");
            check_bind("edge.listen", addr, Side::Device, true).unwrap();
        }
        let (_, reason) = field_of(
            check_bind(
                "admin.bind",
                "0.0.0.0:8443".parse().unwrap(),
                Side::Management,
                false,
            )
            .unwrap_err(),
        );
        assert!(reason.contains("admin.allow_wildcard_bind"), "{reason}");
        for ok in ["127.0.0.1:8883", "10.20.0.1:8883", "[fd00::1]:8883"] {
            check_bind("edge.listen", ok.parse().unwrap(), Side::Device, false).unwrap();
        }
    }

    #[test]
    fn the_defaults_bind_no_wildcard() {
        let c = Config::default();
        check_listeners(&c).unwrap();
        assert!(c.edge.listen.ip().is_loopback());
        assert!(c.admin.bind.ip().is_loopback());
        assert!(!c.edge.allow_wildcard_bind && !c.admin.allow_wildcard_bind);
    }

    // control: segmentation
    #[test]
    fn each_listener_is_checked_and_sides_do_not_share_an_address() {
        let mut c = Config::default();
        c.edge.listen = "0.0.0.0:8883".parse().unwrap();
        assert_eq!(field_of(check_listeners(&c).unwrap_err()).0, "edge.listen");
        c.edge.allow_wildcard_bind = true;
        check_listeners(&c).unwrap();

        c.edge.listen = "10.20.0.1:8883".parse().unwrap();
        c.admin.bind = "[::]:8443".parse().unwrap();
        assert_eq!(field_of(check_listeners(&c).unwrap_err()).0, "admin.bind");
        c.admin.enabled = false;
        check_listeners(&c).unwrap();
        c.admin.enabled = true;

        c.admin.bind = "10.20.0.1:8443".parse().unwrap();
        let (field, reason) = field_of(check_listeners(&c).unwrap_err());
        assert_eq!(field, "admin.bind");
        assert!(reason.contains("edge.listen"), "{reason}");
        c.admin.bind = "10.30.0.1:8443".parse().unwrap();
        check_listeners(&c).unwrap();
        // Loopback for both sides is a single-host test set-up, not a mix.
        c.edge.listen = "127.0.0.1:8883".parse().unwrap();
        c.admin.bind = "127.0.0.1:8443".parse().unwrap();
        check_listeners(&c).unwrap();
    }

    fn with_image_listen(addr: &str) -> Config {
        let mut c = Config::default();
        c.edge.listen = "10.20.0.1:8883".parse().unwrap();
        let mut ota = crate::config::OtaSection::default();
        ota.rollout.image_listen = Some(addr.parse().unwrap());
        c.ota = Some(ota);
        c
    }

    // control: segmentation
    #[test]
    fn the_ota_image_server_is_a_device_facing_listener() {
        // A wildcard is refused, naming the field, the side and the flag.
        for wildcard in ["0.0.0.0:8444", "[::]:8444", "[::ffff:0.0.0.0]:8444"] {
            let mut c = with_image_listen(wildcard);
            let (field, reason) = field_of(check_listeners(&c).unwrap_err());
            assert_eq!(field, "ota.image_listen", "{wildcard}");
            assert!(
                reason.contains("set `ota.allow_wildcard_bind = true`"),
                "{reason}"
            );
            assert!(reason.contains("device network"), "{reason}");
            // The edge's flag does not allow the image server's wildcard.
            c.edge.allow_wildcard_bind = true;
            assert_eq!(
                field_of(check_listeners(&c).unwrap_err()).0,
                "ota.image_listen"
            );
            if let Some(ota) = c.ota.as_mut() {
                ota.rollout.allow_wildcard_bind = true;
            }
            check_listeners(&c).unwrap();
        }
        // The device-side address (or loopback) is accepted.
        for ok in ["10.20.0.1:8444", "127.0.0.1:8444", "[fd00::1]:8444"] {
            check_listeners(&with_image_listen(ok)).unwrap();
        }
        // The admin API may not share the image server's device-side address.
        let mut c = with_image_listen("10.20.0.2:8444");
        c.admin.bind = "10.20.0.2:8443".parse().unwrap();
        let (field, reason) = field_of(check_listeners(&c).unwrap_err());
        assert_eq!(field, "admin.bind");
        assert!(reason.contains("ota.image_listen"), "{reason}");
    }
}
