//! [`DeviceId`]: the one checked form of a device's identity.

use crate::ident::checked_id;

/// Longest device id accepted.
pub const MAX_DEVICE_ID_LEN: usize = crate::ident::MAX_LEN;

checked_id!(
    /// A device identifier, checked once at construction.
    ///
    /// 1 to 64 ASCII characters from `A-Z a-z 0-9 - _`, starting with a letter or
    /// digit. That excludes every character with a meaning in MQTT topics (`/`,
    /// `+`, `#`), `$`, whitespace, dots and control characters, so a `DeviceId`
    /// can be placed into a topic or a path without further escaping.
    DeviceId,
    DeviceId,
    "device id"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_refuses() {
        assert!(DeviceId::parse("pump-07").is_ok());
        assert!(DeviceId::parse("Monitor_3").is_ok());
        for bad in ["", "-x", "_x", "a/b", "a+b", "#", "$SYS", "a b", "a.b", "é"] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(DeviceId::parse(&"a".repeat(64)).is_ok());
        assert!(DeviceId::parse(&"a".repeat(65)).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepted_ids_are_topic_safe(s in "\\PC{0,80}") {
            if let Ok(id) = DeviceId::parse(&s) {
                prop_assert!(!id.as_str().contains(['/', '+', '#', '$', '.', ' ']));
                prop_assert!(id.as_str().len() <= MAX_DEVICE_ID_LEN);
                prop_assert_eq!(DeviceId::parse(id.as_str()).ok(), Some(id.clone()));
            }
        }

        #[test]
        fn valid_ids_round_trip(s in "[A-Za-z0-9][A-Za-z0-9_-]{0,63}") {
            let id = DeviceId::parse(&s).unwrap();
            let json = serde_json::to_string(&id).unwrap();
            let back: DeviceId = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, id);
        }
    }
}
