//! Message types carried on the device topics.
//!
//! Every message has a `schema` version, the device's monotonic `seq` and a
//! timestamp `ts`. The parse functions ([`Telemetry::from_json`], ...) refuse
//! unknown fields, foreign schema versions and out-of-range vitals, so a
//! value of these types has been checked.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;
use crate::topic::TopicKind;
use crate::vitals::VitalKind;

/// The schema version this build speaks.
pub const SCHEMA_VERSION: u32 = 1;
/// Most readings one telemetry message may carry.
pub const MAX_READINGS: usize = 32;
/// Longest free-text field accepted.
pub const MAX_TEXT: usize = 256;

/// One vital-sign reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    /// What was measured.
    pub kind: VitalKind,
    /// The value, in [`VitalKind::ucum_unit`].
    pub value: f64,
}

/// Vital signs from one device (`.../telemetry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// Schema version, [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Per-device monotonic sequence number.
    pub seq: u64,
    /// Device time of measurement.
    pub ts: DateTime<Utc>,
    /// The readings, 1 to [`MAX_READINGS`].
    pub readings: Vec<Reading>,
}

/// What a device is doing, as far as updates care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceActivity {
    /// Not delivering therapy; may be updated.
    Idle,
    /// Therapy in progress: never interrupt.
    TherapyInProgress,
    /// Installing an update.
    Updating,
    /// Reporting a fault.
    Fault,
}

/// Device status (`.../status`, retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Schema version.
    pub schema: u32,
    /// Per-device monotonic sequence number.
    pub seq: u64,
    /// Device time.
    pub ts: DateTime<Utc>,
    /// Current activity.
    pub activity: DeviceActivity,
    /// Running firmware version (semver).
    pub firmware_version: String,
    /// Battery charge, percent, if battery powered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<u8>,
}

/// A firmware offer from the gateway (`.../ota/offer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtaOffer {
    /// Schema version.
    pub schema: u32,
    /// Gateway-side sequence number for this device.
    pub seq: u64,
    /// Gateway time.
    pub ts: DateTime<Utc>,
    /// Campaign this offer belongs to.
    pub campaign_id: String,
    /// TUF target name, `<manufacturer>/<file>`.
    pub target_name: String,
    /// Firmware version (semver).
    pub version: String,
    /// Image length in bytes.
    pub length: u64,
    /// Image SHA-256, lowercase hex.
    pub sha256: String,
    /// Hardware id the image is built for.
    pub hardware_id: String,
    /// HTTPS URL on the gateway to download the image from.
    pub download_url: String,
    /// The manufacturer's signed targets metadata (JSON, as signed).
    pub targets_metadata: String,
}

/// Progress of an update (`.../ota/report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtaOutcome {
    /// Offer verified, downloading.
    Downloading,
    /// Installed into the idle slot, rebooting.
    Installed,
    /// Booted the new image and passed health checks.
    Healthy,
    /// Refused or failed; see `detail`.
    Failed,
    /// Rolled back to the previous slot.
    RolledBack,
    /// Waiting: therapy in progress.
    Deferred,
}

/// An update report from a device (`.../ota/report`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtaReport {
    /// Schema version.
    pub schema: u32,
    /// Per-device monotonic sequence number.
    pub seq: u64,
    /// Device time.
    pub ts: DateTime<Utc>,
    /// Campaign reported on.
    pub campaign_id: String,
    /// Version concerned.
    pub version: String,
    /// What happened.
    pub outcome: OtaOutcome,
    /// Free text for operators (no patient data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Commands the gateway may send (`.../cmd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// Blink / beep so staff can find the device.
    Identify,
    /// Re-sync the device clock.
    SyncTime,
    /// Publish a fresh status.
    ReportStatus,
}

/// A command from the gateway (`.../cmd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Schema version.
    pub schema: u32,
    /// Gateway-side sequence number for this device.
    pub seq: u64,
    /// Gateway time.
    pub ts: DateTime<Utc>,
    /// What to do.
    pub command: CommandKind,
}

fn decode<T: DeserializeOwned>(message: &'static str, bytes: &[u8]) -> Result<T, ProtocolError> {
    serde_json::from_slice(bytes).map_err(|e| ProtocolError::Malformed {
        message,
        detail: e.to_string(),
    })
}

fn check_schema(message: &'static str, found: u32) -> Result<(), ProtocolError> {
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(ProtocolError::Schema {
            message,
            found,
            expected: SCHEMA_VERSION,
        })
    }
}

fn check_text(message: &'static str, field: &str, value: &str) -> Result<(), ProtocolError> {
    if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(ProtocolError::Invalid {
            message,
            detail: format!(
                "field {field} is longer than {MAX_TEXT} bytes or holds control characters"
            ),
        });
    }
    Ok(())
}

impl Telemetry {
    /// Parse and check a telemetry payload.
    ///
    /// # Errors
    /// Malformed JSON, a foreign schema, no or too many readings, or a
    /// reading out of its physiological range.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let t: Self = decode("telemetry", bytes)?;
        check_schema("telemetry", t.schema)?;
        if t.readings.is_empty() || t.readings.len() > MAX_READINGS {
            return Err(ProtocolError::Invalid {
                message: "telemetry",
                detail: format!("{} readings; 1 to {MAX_READINGS} allowed", t.readings.len()),
            });
        }
        for r in &t.readings {
            r.kind.check(r.value)?;
        }
        Ok(t)
    }
}

impl Status {
    /// Parse and check a status payload.
    ///
    /// # Errors
    /// Malformed JSON, a foreign schema or an invalid field.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let s: Self = decode("status", bytes)?;
        check_schema("status", s.schema)?;
        check_text("status", "firmware_version", &s.firmware_version)?;
        if s.battery_pct.is_some_and(|b| b > 100) {
            return Err(ProtocolError::Invalid {
                message: "status",
                detail: "battery_pct above 100".into(),
            });
        }
        Ok(s)
    }
}

impl OtaReport {
    /// Parse and check an update report.
    ///
    /// # Errors
    /// Malformed JSON, a foreign schema or an invalid field.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let r: Self = decode("ota report", bytes)?;
        check_schema("ota report", r.schema)?;
        check_text("ota report", "campaign_id", &r.campaign_id)?;
        check_text("ota report", "version", &r.version)?;
        if let Some(d) = &r.detail {
            check_text("ota report", "detail", d)?;
        }
        Ok(r)
    }
}

impl OtaOffer {
    /// Parse an offer (schema checked; signature checking is separate).
    ///
    /// # Errors
    /// Malformed JSON or a foreign schema.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let o: Self = decode("ota offer", bytes)?;
        check_schema("ota offer", o.schema)?;
        Ok(o)
    }
}

impl Command {
    /// Parse a command.
    ///
    /// # Errors
    /// Malformed JSON or a foreign schema.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let c: Self = decode("command", bytes)?;
        check_schema("command", c.schema)?;
        Ok(c)
    }
}

/// A checked message a device published, by topic kind.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceMessage {
    /// From `.../telemetry`.
    Telemetry(Telemetry),
    /// From `.../status`.
    Status(Status),
    /// From `.../ota/report`.
    OtaReport(OtaReport),
}

impl DeviceMessage {
    /// Parse `payload` as the message type a device sends on `kind`.
    ///
    /// # Errors
    /// [`ProtocolError::Invalid`] for a gateway-to-device kind, otherwise
    /// the parse error of the message type.
    pub fn parse(kind: TopicKind, payload: &[u8]) -> Result<Self, ProtocolError> {
        match kind {
            TopicKind::Telemetry => Telemetry::from_json(payload).map(Self::Telemetry),
            TopicKind::Status => Status::from_json(payload).map(Self::Status),
            TopicKind::OtaReport => OtaReport::from_json(payload).map(Self::OtaReport),
            TopicKind::OtaOffer | TopicKind::Cmd => Err(ProtocolError::Invalid {
                message: "device message",
                detail: format!("devices do not publish on {}", kind.suffix()),
            }),
        }
    }

    /// The message's sequence number.
    #[must_use]
    pub fn seq(&self) -> u64 {
        match self {
            Self::Telemetry(t) => t.seq,
            Self::Status(s) => s.seq,
            Self::OtaReport(r) => r.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Telemetry {
        Telemetry {
            schema: SCHEMA_VERSION,
            seq: 7,
            ts: Utc::now(),
            readings: vec![
                Reading {
                    kind: VitalKind::HeartRate,
                    value: 72.0,
                },
                Reading {
                    kind: VitalKind::Spo2,
                    value: 97.0,
                },
            ],
        }
    }

    #[test]
    fn telemetry_round_trip_and_checks() {
        let t = sample();
        let json = serde_json::to_vec(&t).unwrap();
        assert_eq!(Telemetry::from_json(&json).unwrap(), t);

        let mut bad = sample();
        bad.readings[0].value = 900.0;
        let err = Telemetry::from_json(&serde_json::to_vec(&bad).unwrap()).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::OutOfRange {
                kind: "heart_rate",
                ..
            }
        ));

        let mut bad = sample();
        bad.schema = 2;
        assert!(matches!(
            Telemetry::from_json(&serde_json::to_vec(&bad).unwrap()),
            Err(ProtocolError::Schema { found: 2, .. })
        ));

        let mut bad = sample();
        bad.readings.clear();
        assert!(Telemetry::from_json(&serde_json::to_vec(&bad).unwrap()).is_err());

        assert!(matches!(
            Telemetry::from_json(b"{not json"),
            Err(ProtocolError::Malformed { .. })
        ));
        let extra = br#"{"schema":1,"seq":1,"ts":"2026-01-01T00:00:00Z","readings":[{"kind":"spo2","value":97}],"x":1}"#;
        assert!(Telemetry::from_json(extra).is_err());
    }

    #[test]
    fn device_message_by_kind() {
        let json = serde_json::to_vec(&sample()).unwrap();
        assert_eq!(
            DeviceMessage::parse(TopicKind::Telemetry, &json)
                .unwrap()
                .seq(),
            7
        );
        assert!(DeviceMessage::parse(TopicKind::Cmd, &json).is_err());
        assert!(DeviceMessage::parse(TopicKind::Status, &json).is_err());
        let status = Status {
            schema: 1,
            seq: 3,
            ts: Utc::now(),
            activity: DeviceActivity::TherapyInProgress,
            firmware_version: "1.2.3".into(),
            battery_pct: Some(80),
        };
        let json = serde_json::to_vec(&status).unwrap();
        assert_eq!(
            DeviceMessage::parse(TopicKind::Status, &json)
                .unwrap()
                .seq(),
            3
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for kind in TopicKind::ALL {
                let _ = DeviceMessage::parse(kind, &bytes);
            }
            let _ = OtaOffer::from_json(&bytes);
            let _ = Command::from_json(&bytes);
        }

        #[test]
        fn accepted_telemetry_is_in_range(hr in -100.0f64..500.0, spo2 in 0.0f64..120.0) {
            let json = format!(
                r#"{{"schema":1,"seq":1,"ts":"2026-01-01T00:00:00Z","readings":[{{"kind":"heart_rate","value":{hr}}},{{"kind":"spo2","value":{spo2}}}]}}"#
            );
            if let Ok(t) = Telemetry::from_json(json.as_bytes()) {
                for r in &t.readings {
                    let (min, max) = r.kind.range();
                    prop_assert!(r.value >= min && r.value <= max);
                }
            }
        }
    }
}
