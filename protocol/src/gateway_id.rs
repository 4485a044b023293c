//! [`GatewayId`]: the one checked form of a ward gateway's identity.
//!
//! The OTA server reads it from the gateway's client certificate
//! (`urn:wardgate:gateway:<id>`, else the CN) and names campaigns' gateways
//! with it; the gateway puts it in its reports. Both sides use this type, so
//! they cannot disagree on what a gateway may be called.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{truncate, ProtocolError};

/// Longest gateway id accepted.
pub const MAX_GATEWAY_ID_LEN: usize = crate::ident::MAX_LEN;

/// A gateway identifier, checked once at construction.
///
/// The same rule as [`crate::DeviceId`]: 1 to 64 ASCII characters from
/// `A-Z a-z 0-9 - _`, starting with a letter or digit, so it is safe in a
/// topic, a URL path and a log line without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GatewayId(String);

impl GatewayId {
    /// Parse `input` as a gateway id.
    ///
    /// # Errors
    /// [`ProtocolError::GatewayId`] naming the rule that was broken.
    pub fn parse(input: &str) -> Result<Self, ProtocolError> {
        crate::ident::check(input).map_err(|reason| ProtocolError::GatewayId {
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

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for GatewayId {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for GatewayId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for GatewayId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GatewayId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceId;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_refuses() {
        assert!(GatewayId::parse("ward-3a").is_ok());
        assert!(GatewayId::parse("Ward_3A").is_ok());
        for bad in ["", "-x", "_x", "a/b", "a+b", "#", "$SYS", "a b", "a.b", "é"] {
            let e = GatewayId::parse(bad).unwrap_err();
            assert!(e.to_string().contains("gateway id"), "{e}");
        }
        assert!(GatewayId::parse(&"g".repeat(64)).is_ok());
        assert!(GatewayId::parse(&"g".repeat(65)).is_err());
    }

    proptest! {
        /// A gateway id and a device id follow one rule: whatever one
        /// accepts, the other accepts.
        #[test]
        fn same_rule_as_device_id(s in "\\PC{0,80}") {
            prop_assert_eq!(GatewayId::parse(&s).is_ok(), DeviceId::parse(&s).is_ok());
        }

        #[test]
        fn valid_ids_round_trip(s in "[A-Za-z0-9][A-Za-z0-9_-]{0,63}") {
            let id = GatewayId::parse(&s).unwrap();
            let json = serde_json::to_string(&id).unwrap();
            let back: GatewayId = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, id);
        }
    }
}
