//! The internal vital-sign record every renderer reads, built from the
//! `wardgate-protocol` telemetry types.
//!
//! A [`VitalRecord`] is one reading: device id, what was measured (its IEEE
//! 11073 MDC code and UCUM unit come from [`VitalKind`], which the protocol
//! owns), the value, the device's own time and the message's `seq`. This
//! module adds only what the upstream formats need beyond the wire
//! contract: LOINC codes, display texts, and the codes of the
//! blood-pressure panel that groups systolic and diastolic readings.

use chrono::{DateTime, Utc};
use wardgate_protocol::message::Telemetry;
use wardgate_protocol::vitals::VitalKind;
use wardgate_protocol::DeviceId;

use super::error::RenderError;

/// One code in a code system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// The code.
    pub code: &'static str,
    /// Its display text in that system.
    pub display: &'static str,
}

impl Code {
    /// A code and its display text.
    #[must_use]
    pub const fn new(code: &'static str, display: &'static str) -> Self {
        Self { code, display }
    }
}

/// LOINC code(s) of a vital kind, preferred first; `None` for kinds that
/// are not vital signs in FHIR's sense (infusion rate).
#[must_use]
pub fn loinc(kind: VitalKind) -> Option<&'static [Code]> {
    // `const` blocks: a `const fn` call is not promoted to `'static` alone.
    Some(match kind {
        VitalKind::HeartRate => const { &[Code::new("8867-4", "Heart rate")] },
        VitalKind::Spo2 => {
            const {
                &[
                    Code::new(
                        "59408-5",
                        "Oxygen saturation in Arterial blood by Pulse oximetry",
                    ),
                    Code::new("2708-6", "Oxygen saturation in Arterial blood"),
                ]
            }
        }
        VitalKind::RespiratoryRate => const { &[Code::new("9279-1", "Respiratory rate")] },
        VitalKind::Temperature => const { &[Code::new("8310-5", "Body temperature")] },
        VitalKind::SystolicBp => const { &[Code::new("8480-6", "Systolic blood pressure")] },
        VitalKind::DiastolicBp => const { &[Code::new("8462-4", "Diastolic blood pressure")] },
        VitalKind::InfusionRate => return None,
    })
}

/// Human-readable unit of a kind, for `Quantity.unit`.
#[must_use]
pub fn unit_text(kind: VitalKind) -> &'static str {
    match kind {
        VitalKind::HeartRate => "beats/minute",
        VitalKind::RespiratoryRate => "breaths/minute",
        VitalKind::Spo2 => "%",
        VitalKind::Temperature => "Cel",
        VitalKind::SystolicBp | VitalKind::DiastolicBp => "mmHg",
        VitalKind::InfusionRate => "mL/h",
    }
}

/// Text for `code.text`.
#[must_use]
pub fn text(kind: VitalKind) -> &'static str {
    match kind {
        VitalKind::HeartRate => "Heart rate",
        VitalKind::Spo2 => "Oxygen saturation",
        VitalKind::RespiratoryRate => "Respiratory rate",
        VitalKind::Temperature => "Body temperature",
        VitalKind::SystolicBp => "Systolic blood pressure",
        VitalKind::DiastolicBp => "Diastolic blood pressure",
        VitalKind::InfusionRate => "Infusion rate",
    }
}

/// LOINC code of the blood-pressure panel.
pub const BP_PANEL_LOINC: Code =
    Code::new("85354-9", "Blood pressure panel with all children optional");
/// IEEE 11073 code of the non-invasive blood-pressure group.
pub const BP_PANEL_MDC: Code = Code::new("150020", "MDC_PRESS_BLD_NONINV");

/// The one internal vital-sign record: one reading of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct VitalRecord {
    /// Device id (from the certificate).
    pub device_id: DeviceId,
    /// The device's sequence number of the message it came in.
    pub seq: u64,
    /// Measurement time as the device reported it.
    pub time: DateTime<Utc>,
    /// What was measured.
    pub kind: VitalKind,
    /// The value, in [`VitalRecord::ucum_unit`].
    pub value: f64,
}

impl VitalRecord {
    /// IEEE 11073-10101 (MDC) code of what was measured.
    #[must_use]
    pub fn mdc_code(&self) -> u32 {
        self.kind.mdc_code()
    }

    /// UCUM code of the value's unit.
    #[must_use]
    pub fn ucum_unit(&self) -> &'static str {
        self.kind.ucum_unit()
    }
}

/// The vital-sign records of one telemetry payload from `device_id`, one
/// per reading, in reading order.
///
/// # Errors
/// [`RenderError::Parse`] if the payload is not valid telemetry.
pub fn records(device_id: &DeviceId, payload: &[u8]) -> Result<Vec<VitalRecord>, RenderError> {
    let t = Telemetry::from_json(payload).map_err(RenderError::Parse)?;
    Ok(t.readings
        .iter()
        .map(|r| VitalRecord {
            device_id: device_id.clone(),
            seq: t.seq,
            time: t.ts,
            kind: r.kind,
            value: r.value,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::id;

    #[test]
    fn one_record_per_reading_in_order_with_codes_and_units() {
        let payload = br#"{"schema":1,"seq":5,"ts":"2026-11-29T04:00:00Z","readings":[
            {"kind":"heart_rate","value":72},{"kind":"systolic_bp","value":120},
            {"kind":"infusion_rate","value":20},{"kind":"diastolic_bp","value":80}]}"#;
        let r = records(&id("mon-1"), payload).unwrap();
        let kinds: Vec<_> = r.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            vec![
                VitalKind::HeartRate,
                VitalKind::SystolicBp,
                VitalKind::InfusionRate,
                VitalKind::DiastolicBp
            ]
        );
        assert!(r.iter().all(|r| r.seq == 5 && r.device_id == id("mon-1")));
        assert_eq!(
            (r[0].mdc_code(), r[0].ucum_unit(), r[0].value),
            (147_842, "/min", 72.0)
        );
        assert_eq!(r[3].ucum_unit(), "mm[Hg]");
    }

    #[test]
    fn every_vital_kind_but_infusion_has_loinc() {
        for kind in VitalKind::ALL {
            assert_eq!(loinc(kind).is_some(), kind != VitalKind::InfusionRate);
        }
    }

    #[test]
    fn refuses_non_telemetry() {
        assert!(records(&id("d"), b"{\"hello\":1}").is_err());
    }

    proptest::proptest! {
        #[test]
        fn records_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = records(&id("d"), &bytes);
        }
    }
}
