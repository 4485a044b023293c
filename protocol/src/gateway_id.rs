//! [`GatewayId`]: the one checked form of a ward gateway's identity.
//!
//! The OTA server reads it from the gateway's client certificate
//! (`urn:wardgate:gateway:<id>`, else the CN) and names campaigns' gateways
//! with it; the gateway puts it in its reports. Both sides use this type, so
//! they cannot disagree on what a gateway may be called.

use crate::ident::checked_id;

/// Longest gateway id accepted.
pub const MAX_GATEWAY_ID_LEN: usize = crate::ident::MAX_LEN;

checked_id!(
    /// A gateway identifier, checked once at construction.
    ///
    /// The same rule as [`crate::DeviceId`]: 1 to 64 ASCII characters from
    /// `A-Z a-z 0-9 - _`, starting with a letter or digit, so it is safe in a
    /// topic, a URL path and a log line without escaping.
    GatewayId,
    GatewayId,
    "gateway id"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceId;
    use proptest::prelude::*;

    #[test]
    fn refusals_name_a_gateway_id_and_json_keeps_case() {
        let e = GatewayId::parse("ward/3a").unwrap_err().to_string();
        assert!(e.starts_with("invalid gateway id \"ward/3a\""), "{e}");
        let g: GatewayId = serde_json::from_str("\"Ward_3A\"").unwrap();
        assert_eq!(g.as_str(), "Ward_3A");
        assert_eq!(serde_json::to_string(&g).unwrap(), "\"Ward_3A\"");
        assert!(serde_json::from_str::<GatewayId>("\"$SYS\"").is_err());
        assert_eq!(MAX_GATEWAY_ID_LEN, crate::device_id::MAX_DEVICE_ID_LEN);
    }

    proptest! {
        /// A gateway id and a device id follow one rule: whatever one
        /// accepts, the other accepts, unchanged.
        #[test]
        fn same_rule_as_device_id(s in "\\PC{0,80}") {
            let g = GatewayId::parse(&s).ok().map(|g| g.to_string());
            let d = DeviceId::parse(&s).ok().map(|d| d.to_string());
            prop_assert_eq!(g, d);
        }

        #[test]
        fn accepted_shapes_agree(s in "[A-Za-z0-9_-]{0,70}") {
            prop_assert_eq!(GatewayId::parse(&s).is_ok(), DeviceId::parse(&s).is_ok());
        }
    }
}
