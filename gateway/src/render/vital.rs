//! The internal vital-sign record every renderer reads, built from the
//! `wardgate-protocol` telemetry types.
//!
//! MDC codes and UCUM units come from [`VitalKind`] (the protocol owns
//! them); this module adds only what the upstream formats need beyond the
//! wire contract: LOINC codes, display texts, and the blood-pressure panel
//! that groups systolic and diastolic readings.

use chrono::{DateTime, Utc};
use wardgate_protocol::message::Telemetry;
use wardgate_protocol::vitals::VitalKind;

use super::RenderError;

/// One code in a code system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// The code.
    pub code: &'static str,
    /// Its display text in that system.
    pub display: &'static str,
}

/// LOINC code(s) of a vital kind, preferred first; `None` for kinds that
/// are not vital signs in FHIR's sense (infusion rate).
#[must_use]
pub fn loinc(kind: VitalKind) -> Option<&'static [Code]> {
    Some(match kind {
        VitalKind::HeartRate => &[Code {
            code: "8867-4",
            display: "Heart rate",
        }],
        VitalKind::Spo2 => &[
            Code {
                code: "59408-5",
                display: "Oxygen saturation in Arterial blood by Pulse oximetry",
            },
            Code {
                code: "2708-6",
                display: "Oxygen saturation in Arterial blood",
            },
        ],
        VitalKind::RespiratoryRate => &[Code {
            code: "9279-1",
            display: "Respiratory rate",
        }],
        VitalKind::Temperature => &[Code {
            code: "8310-5",
            display: "Body temperature",
        }],
        VitalKind::SystolicBp => &[Code {
            code: "8480-6",
            display: "Systolic blood pressure",
        }],
        VitalKind::DiastolicBp => &[Code {
            code: "8462-4",
            display: "Diastolic blood pressure",
        }],
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
pub const BP_PANEL_LOINC: Code = Code {
    code: "85354-9",
    display: "Blood pressure panel with all children optional",
};
/// IEEE 11073 code of the non-invasive blood-pressure group.
pub const BP_PANEL_MDC: Code = Code {
    code: "150020",
    display: "MDC_PRESS_BLD_NONINV",
};

/// One measured vital sign.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Vital {
    /// A single quantity (heart rate, SpO2, respiratory rate, temperature).
    Single {
        /// What was measured.
        kind: VitalKind,
        /// Value in the kind's UCUM unit.
        value: f64,
    },
    /// Non-invasive blood pressure: systolic and diastolic from one message.
    BloodPressure {
        /// Systolic, mmHg.
        systolic: Option<f64>,
        /// Diastolic, mmHg.
        diastolic: Option<f64>,
    },
}

impl Vital {
    /// Short stable name, used in resource ids.
    #[must_use]
    pub fn slug(&self) -> &'static str {
        match self {
            Self::Single { kind, .. } => match kind {
                VitalKind::HeartRate => "hr",
                VitalKind::Spo2 => "spo2",
                VitalKind::RespiratoryRate => "rr",
                VitalKind::Temperature => "temp",
                VitalKind::SystolicBp => "sys",
                VitalKind::DiastolicBp => "dia",
                VitalKind::InfusionRate => "inf",
            },
            Self::BloodPressure { .. } => "bp",
        }
    }
}

/// The one internal vital-sign record (DESIGN.md, "Upstream data formats").
#[derive(Debug, Clone, PartialEq)]
pub struct VitalRecord {
    /// Device id (from the certificate, as stored in the outbox).
    pub device_id: String,
    /// The device's sequence number of the message it came in.
    pub seq: u64,
    /// Measurement time as the device reported it.
    pub time: DateTime<Utc>,
    /// The measurement.
    pub vital: Vital,
}

/// The vital-sign records of one telemetry payload, in reading order, with
/// systolic and diastolic readings joined into one blood-pressure record.
/// Readings that are not FHIR vital signs (infusion rate) are left out.
///
/// # Errors
/// [`RenderError::Parse`] if the payload is not valid telemetry.
pub fn records(device_id: &str, payload: &[u8]) -> Result<Vec<VitalRecord>, RenderError> {
    let t = Telemetry::from_json(payload).map_err(|e| RenderError::Parse(e.to_string()))?;
    let mut out = Vec::with_capacity(t.readings.len());
    let mut bp: Option<usize> = None;
    for r in &t.readings {
        let record = |vital| VitalRecord {
            device_id: device_id.to_owned(),
            seq: t.seq,
            time: t.ts,
            vital,
        };
        match r.kind {
            VitalKind::SystolicBp | VitalKind::DiastolicBp => {
                let index = *bp.get_or_insert_with(|| {
                    out.push(record(Vital::BloodPressure {
                        systolic: None,
                        diastolic: None,
                    }));
                    out.len() - 1
                });
                if let Vital::BloodPressure {
                    systolic,
                    diastolic,
                } = &mut out[index].vital
                {
                    if r.kind == VitalKind::SystolicBp {
                        *systolic = Some(r.value);
                    } else {
                        *diastolic = Some(r.value);
                    }
                }
            }
            VitalKind::InfusionRate => {}
            kind => out.push(record(Vital::Single {
                kind,
                value: r.value,
            })),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_blood_pressure_and_skips_infusion() {
        let payload = br#"{"schema":1,"seq":5,"ts":"2026-11-29T04:00:00Z","readings":[
            {"kind":"heart_rate","value":72},{"kind":"systolic_bp","value":120},
            {"kind":"infusion_rate","value":20},{"kind":"diastolic_bp","value":80}]}"#;
        let r = records("mon-1", payload).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].vital,
            Vital::Single {
                kind: VitalKind::HeartRate,
                value: 72.0
            }
        );
        assert_eq!(
            r[1].vital,
            Vital::BloodPressure {
                systolic: Some(120.0),
                diastolic: Some(80.0)
            }
        );
        assert_eq!(r[1].seq, 5);
    }

    #[test]
    fn every_vital_kind_but_infusion_has_loinc() {
        for kind in VitalKind::ALL {
            assert_eq!(loinc(kind).is_some(), kind != VitalKind::InfusionRate);
        }
    }

    #[test]
    fn refuses_non_telemetry() {
        assert!(records("d", b"{\"hello\":1}").is_err());
    }

    proptest::proptest! {
        #[test]
        fn records_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = records("d", &bytes);
        }

        #[test]
        fn every_valid_reading_is_rendered_once(hr in 20.0f64..300.0, sys in 40.0f64..300.0, dia in 20.0f64..200.0, seq in 0u64..u64::MAX / 2) {
            let payload = format!(
                r#"{{"schema":1,"seq":{seq},"ts":"2026-11-29T04:00:00Z","readings":[{{"kind":"diastolic_bp","value":{dia}}},{{"kind":"heart_rate","value":{hr}}},{{"kind":"systolic_bp","value":{sys}}}]}}"#
            );
            let r = records("d", payload.as_bytes()).unwrap();
            proptest::prop_assert_eq!(r.len(), 2);
            // serde_json's float parsing may differ from the shortest
            // representation in the last ulp; compare with a tolerance.
            let close = |a: f64, b: f64| (a - b).abs() <= b.abs() * 1e-12;
            match r[0].vital {
                Vital::BloodPressure { systolic: Some(s), diastolic: Some(d) } => {
                    proptest::prop_assert!(close(s, sys) && close(d, dia));
                }
                other => proptest::prop_assert!(false, "{other:?}"),
            }
            match r[1].vital {
                Vital::Single { kind: VitalKind::HeartRate, value } => proptest::prop_assert!(close(value, hr)),
                other => proptest::prop_assert!(false, "{other:?}"),
            }
        }
    }
}
