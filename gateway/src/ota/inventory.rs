//! The ward's inventory as the OTA server sees it: every enrolled device
//! that is not revoked, with its hardware id and the firmware it runs.
//!
//! The hardware id comes from the registry (what the device was enrolled
//! as); the firmware from the device's last status when it is a valid
//! version (what it runs now), else from the registry (what it ran when
//! last updated or enrolled). Quarantined devices stay in: the edge still
//! lets them receive offers, and a security update may be why they are
//! quarantined. Revoked devices are out: they can never connect again.

use std::collections::HashMap;

use wardgate_protocol::DeviceId;

use crate::ota::device_state::SeenStatus;
use crate::ota::server_api::InventoryDevice;
use crate::registry::{DeviceRecord, DeviceState};

/// Build the inventory from the registry and the last statuses.
#[must_use]
pub fn build(devices: &[DeviceRecord], statuses: &[SeenStatus]) -> Vec<InventoryDevice> {
    let latest: HashMap<&DeviceId, &SeenStatus> =
        statuses.iter().map(|s| (&s.device_id, s)).collect();
    devices
        .iter()
        .filter(|d| d.state != DeviceState::Revoked)
        .map(|d| InventoryDevice {
            device_id: d.id.clone(),
            hardware_id: d.hardware_id.clone(),
            firmware_version: latest
                .get(&d.id)
                .filter(|s| s.version().is_some())
                .map_or_else(
                    || d.firmware_version.clone(),
                    |s| s.firmware_version.clone(),
                ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use wardgate_protocol::DeviceActivity;

    fn record(id: &str, state: DeviceState) -> DeviceRecord {
        DeviceRecord {
            id: DeviceId::parse(id).unwrap(),
            model: "P7".into(),
            hardware_id: "acme-pump-p7".into(),
            manufacturer: "acme".into(),
            firmware_version: "1.0.0".into(),
            cert_fingerprint: None,
            state,
            enrolled_at: Utc::now(),
            updated_at: Utc::now(),
            last_seen: None,
            last_seq: None,
        }
    }

    #[test]
    fn revoked_devices_are_left_out_and_status_firmware_wins() {
        let devices = [
            record("pump-01", DeviceState::Active),
            record("pump-02", DeviceState::Quarantined),
            record("pump-03", DeviceState::Revoked),
            record("pump-04", DeviceState::Active),
        ];
        let seen = |id: &str, fw: &str| SeenStatus {
            device_id: DeviceId::parse(id).unwrap(),
            activity: DeviceActivity::Idle,
            firmware_version: fw.into(),
            seen_at: Utc::now(),
        };
        let inv = build(
            &devices,
            &[seen("pump-01", "1.2.0"), seen("pump-04", "not a version")],
        );
        let got: Vec<(&str, &str)> = inv
            .iter()
            .map(|d| (d.device_id.as_str(), d.firmware_version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("pump-01", "1.2.0"),
                ("pump-02", "1.0.0"),
                ("pump-04", "1.0.0")
            ]
        );
        assert!(inv.iter().all(|d| d.hardware_id == "acme-pump-p7"));
    }
}
