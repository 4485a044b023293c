//! Telemetry as a device sends it (`wardgate_protocol::Telemetry`), for
//! tests that publish vitals without the `device-sim` generator: a message
//! with chosen readings, and the raw JSON of a one-reading message for
//! tests that send bytes.

use chrono::Utc;
use wardgate_protocol::message::{Reading, Telemetry, SCHEMA_VERSION};
use wardgate_protocol::vitals::VitalKind;

/// A telemetry message number `seq`, timed now, with `readings`.
#[must_use]
pub fn telemetry(seq: u64, readings: &[(VitalKind, f64)]) -> Telemetry {
    Telemetry {
        schema: SCHEMA_VERSION,
        seq,
        ts: Utc::now(),
        readings: readings
            .iter()
            .map(|&(kind, value)| Reading { kind, value })
            .collect(),
    }
}

/// The JSON text of message `seq` with one heart-rate reading, at a fixed
/// device time, exactly as a device would put it in a PUBLISH.
#[must_use]
pub fn telemetry_json(seq: u64, heart_rate: f64) -> Vec<u8> {
    format!(
        r#"{{"schema":1,"seq":{seq},"ts":"2026-01-01T00:00:00Z","readings":[{{"kind":"heart_rate","value":{heart_rate}}}]}}"#
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_as_telemetry() {
        let t = Telemetry::from_json(&telemetry_json(7, 70.0)).unwrap();
        assert_eq!(t.seq, 7);
        let t = telemetry(8, &[(VitalKind::HeartRate, 61.0), (VitalKind::Spo2, 97.0)]);
        assert_eq!(t.readings.len(), 2);
    }
}
