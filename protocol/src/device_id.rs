//! [`DeviceId`]: the one checked form of a device's identity.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{truncate, ProtocolError};

/// Longest device id accepted.
pub const MAX_DEVICE_ID_LEN: usize = crate::ident::MAX_LEN;

/// A device identifier, checked once at construction.
///
/// 1 to 64 ASCII characters from `A-Z a-z 0-9 - _`, starting with a letter or
/// digit. That excludes every character with a meaning in MQTT topics (`/`,
/// `+`, `#`), `$`, whitespace, dots and control characters, so a `DeviceId`
/// can be placed into a topic or a path without further escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

impl DeviceId {
    /// Parse `input` as a device id.
    ///
    /// # Errors
    /// [`ProtocolError::DeviceId`] naming the rule that was broken.
    pub fn parse(input: &str) -> Result<Self, ProtocolError> {
        crate::ident::check(input).map_err(|reason| ProtocolError::DeviceId {
            input: truncate(input, 80),
            reason,
        })?;
        Ok(Self(input.to_owned()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DeviceId {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for DeviceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

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
