//! FHIR R4 `Observation` rendering.
//!
//! One `Observation` per vital sign, blood pressure as the 85354-9 panel with
//! systolic/diastolic (and mean, if measured) components, following the R4
//! vital-signs profile: `status` final, category `vital-signs`, `code` with
//! the LOINC coding(s) and the IEEE 11073 MDC coding, UCUM `valueQuantity`,
//! `effectiveDateTime` from the device's own time, `issued` when the gateway
//! received it, and `device` referring to `Device/<device id>`. The gateway
//! knows no patient, so `subject` is left to the receiving system; for that
//! reason the resources do not claim the vital-signs profile in
//! `meta.profile` (it requires `subject`), although they follow it otherwise.
//!
//! The renderer reads [`VitalRecord`]s and groups them first
//! ([`measurements`]): the systolic and diastolic readings of one message
//! become one blood-pressure panel, and infusion rate, which is not a FHIR
//! vital sign, is left out (it is sent only in the JSON rendering).
//!
//! Resource ids are stable and distinct per (device, seq, vital) (see
//! [`FhirId`]), so a message the QoS 1 uplink delivers twice updates,
//! rather than duplicates, the resource, and two devices never share one.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use wardgate_protocol::vitals::VitalKind;
use wardgate_protocol::DeviceId;

use super::error::RenderError;
use super::fhir_id::FhirId;
use super::vital::{self, Code, VitalRecord, BP_PANEL_LOINC, BP_PANEL_MDC};

/// LOINC code system URI.
pub const LOINC: &str = "http://loinc.org";
/// IEEE 11073-10101 nomenclature URI.
pub const MDC: &str = "urn:iso:std:iso:11073:10101";
/// UCUM code system URI.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// FHIR observation category code system.
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// Identifier system of Wardgate device ids.
pub const DEVICE_ID_SYSTEM: &str = "urn:wardgate:device";

/// What one `Observation` holds: a single vital sign, or the
/// blood-pressure panel of one message.
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
    /// Short stable name, used in resource ids and identifiers.
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

/// The input of one `Observation`.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The device.
    pub device_id: DeviceId,
    /// The device's sequence number of the message it came in.
    pub seq: u64,
    /// Measurement time as the device reported it.
    pub time: DateTime<Utc>,
    /// The measurement.
    pub vital: Vital,
}

/// Group `records` into `Observation` inputs, in reading order: the
/// systolic and diastolic readings of one message (same device and `seq`)
/// join one blood-pressure panel at the place of the first of them;
/// infusion rate is left out.
#[must_use]
pub fn measurements(records: &[VitalRecord]) -> Vec<Measurement> {
    let mut out: Vec<Measurement> = Vec::with_capacity(records.len());
    for r in records {
        let measurement = |vital| Measurement {
            device_id: r.device_id.clone(),
            seq: r.seq,
            time: r.time,
            vital,
        };
        match r.kind {
            VitalKind::SystolicBp | VitalKind::DiastolicBp => {
                let panel = out.iter().position(|m| {
                    matches!(m.vital, Vital::BloodPressure { .. })
                        && m.seq == r.seq
                        && m.device_id == r.device_id
                });
                let index = panel.unwrap_or_else(|| {
                    out.push(measurement(Vital::BloodPressure {
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
            kind => out.push(measurement(Vital::Single {
                kind,
                value: r.value,
            })),
        }
    }
    out
}

/// What the FHIR `Device` resource says about a device (from the registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Wardgate device id.
    pub id: DeviceId,
    /// Manufacturer.
    pub manufacturer: String,
    /// Model name.
    pub model: String,
    /// Hardware id firmware is built for.
    pub hardware_id: String,
    /// Installed firmware version.
    pub firmware_version: String,
    /// Whether the registry has it active (else quarantined or revoked).
    pub active: bool,
}

/// The FHIR R4 `Device` resource that `Observation.device` refers to:
/// manufacturer, model, hardware id and firmware version. The registry
/// holds no serial number, so `serialNumber` is not sent.
#[must_use]
pub fn device(info: &DeviceInfo) -> Value {
    json!({
        "resourceType": "Device",
        "id": FhirId::device(&info.id),
        "identifier": [
            {"system": DEVICE_ID_SYSTEM, "value": info.id},
            {"system": "urn:wardgate:hardware-id", "value": info.hardware_id},
        ],
        "status": if info.active { "active" } else { "inactive" },
        "manufacturer": info.manufacturer,
        "deviceName": [{"name": info.model, "type": "model-name"}],
        "modelNumber": info.model,
        "version": [{"value": info.firmware_version}],
    })
}

/// Render `records` as FHIR R4 `Observation` resources, grouped by
/// [`measurements`].
///
/// # Errors
/// Never at present; the `Result` keeps the renderer signature uniform.
pub fn observations(
    records: &[VitalRecord],
    received_at: DateTime<Utc>,
) -> Result<Vec<Value>, RenderError> {
    Ok(measurements(records)
        .iter()
        .map(|m| observation(m, received_at))
        .collect())
}

/// One `Observation` for `record`.
#[must_use]
pub fn observation(record: &Measurement, received_at: DateTime<Utc>) -> Value {
    let id = FhirId::observation(&record.device_id, record.seq, record.vital.slug());
    let mut obs = json!({
        "resourceType": "Observation",
        "id": id,
        "identifier": [{
            "system": "urn:wardgate:observation",
            "value": format!("{}/{}/{}", record.device_id, record.seq, record.vital.slug()),
        }],
        "status": "final",
        "category": [{
            "coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}],
            "text": "Vital Signs",
        }],
        "effectiveDateTime": record.time.to_rfc3339_opts(SecondsFormat::Millis, true),
        "issued": received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "device": {
            "reference": format!("Device/{}", FhirId::device(&record.device_id)),
            "identifier": {"system": DEVICE_ID_SYSTEM, "value": record.device_id},
        },
    });
    match record.vital {
        Vital::Single { kind, value } => {
            obs["code"] = kind_concept(kind);
            obs["valueQuantity"] = quantity(value, kind);
        }
        Vital::BloodPressure {
            systolic,
            diastolic,
        } => {
            obs["code"] = concept(&[BP_PANEL_LOINC], BP_PANEL_MDC, "Blood pressure");
            let components: Vec<Value> = [
                (VitalKind::SystolicBp, systolic),
                (VitalKind::DiastolicBp, diastolic),
            ]
            .into_iter()
            .filter_map(|(kind, v)| {
                v.map(|v| json!({"code": kind_concept(kind), "valueQuantity": quantity(v, kind)}))
            })
            .collect();
            obs["component"] = Value::Array(components);
        }
    }
    obs
}

fn kind_concept(kind: VitalKind) -> Value {
    let mdc_code = kind.mdc_code().to_string();
    let mut coding: Vec<Value> = vital::loinc(kind)
        .unwrap_or_default()
        .iter()
        .map(|c| json!({"system": LOINC, "code": c.code, "display": c.display}))
        .collect();
    coding.push(json!({"system": MDC, "code": mdc_code, "display": kind.mdc_ref()}));
    json!({"coding": coding, "text": vital::text(kind)})
}

fn concept(loinc: &[Code], mdc: Code, text: &str) -> Value {
    let mut coding: Vec<Value> = loinc
        .iter()
        .map(|c| json!({"system": LOINC, "code": c.code, "display": c.display}))
        .collect();
    coding.push(json!({"system": MDC, "code": mdc.code, "display": mdc.display}));
    json!({"coding": coding, "text": text})
}

fn quantity(value: f64, kind: VitalKind) -> Value {
    json!({"value": value, "unit": vital::unit_text(kind), "system": UCUM, "code": kind.ucum_unit()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fhir_id;
    use crate::render::vital::records;
    use crate::testing::id;

    fn rec(vital: Vital) -> Measurement {
        Measurement {
            device_id: id("monitor-01"),
            seq: 9,
            time: DateTime::parse_from_rfc3339("2026-11-29T04:00:00.250Z")
                .unwrap()
                .with_timezone(&Utc),
            vital,
        }
    }

    /// The observation of one single-valued reading of monitor-01.
    fn single(kind: VitalKind, value: f64) -> Value {
        observation(&rec(Vital::Single { kind, value }), Utc::now())
    }

    #[test]
    fn heart_rate_carries_loinc_mdc_ucum_and_device_time() {
        let o = single(VitalKind::HeartRate, 72.0);
        assert_eq!(o["code"]["coding"][0]["code"], "8867-4");
        assert_eq!(o["code"]["coding"][1]["system"], MDC);
        assert_eq!(o["code"]["coding"][1]["code"], "147842");
        assert_eq!(o["valueQuantity"]["code"], "/min");
        assert_eq!(o["effectiveDateTime"], "2026-11-29T04:00:00.250Z");
        assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(o["device"]["reference"], "Device/monitor-01");
    }

    #[test]
    fn blood_pressure_is_a_panel_with_components() {
        let o = observation(
            &rec(Vital::BloodPressure {
                systolic: Some(120.0),
                diastolic: Some(80.0),
            }),
            Utc::now(),
        );
        assert_eq!(o["code"]["coding"][0]["code"], "85354-9");
        assert!(o.get("valueQuantity").is_none());
        assert_eq!(o["component"][0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(o["component"][1]["code"]["coding"][0]["code"], "8462-4");
        assert_eq!(o["component"][1]["valueQuantity"]["code"], "mm[Hg]");
    }

    #[test]
    fn spo2_has_both_loinc_codes() {
        let o = single(VitalKind::Spo2, 97.0);
        let codes: Vec<_> = o["code"]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["code"].clone())
            .collect();
        assert_eq!(codes, vec!["59408-5", "2708-6", "150456"]);
    }

    #[test]
    fn resource_ids_fit_fhir_rules() {
        let mut r = rec(Vital::Single {
            kind: VitalKind::HeartRate,
            value: 60.0,
        });
        // The longest device id there is, full of characters FHIR ids lack.
        r.device_id = id(&"a_very_long-device_id".repeat(5)[..64]);
        r.seq = u64::MAX;
        let o = observation(&r, Utc::now());
        let id = o["id"].as_str().unwrap();
        assert!(id.len() <= 64);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        let device = o["device"]["reference"].as_str().unwrap();
        let device = device.strip_prefix("Device/").unwrap();
        assert!(fhir_id::is_valid(device), "{device}");
    }

    #[test]
    fn device_reference_is_the_device_resource_id() {
        let mut r = rec(Vital::Single {
            kind: VitalKind::HeartRate,
            value: 60.0,
        });
        r.device_id = id("pump_01");
        let o = observation(&r, Utc::now());
        let info = DeviceInfo {
            id: id("pump_01"),
            manufacturer: "m".into(),
            model: "x".into(),
            hardware_id: "h".into(),
            firmware_version: "1.0.0".into(),
            active: true,
        };
        let d = device(&info);
        assert_eq!(
            o["device"]["reference"],
            format!("Device/{}", d["id"].as_str().unwrap())
        );
        assert_eq!(o["device"]["identifier"]["value"], "pump_01");
        assert_eq!(d["identifier"][0]["value"], "pump_01");
    }

    #[test]
    fn joins_blood_pressure_and_skips_infusion() {
        let payload = br#"{"schema":1,"seq":5,"ts":"2026-11-29T04:00:00Z","readings":[
            {"kind":"heart_rate","value":72},{"kind":"systolic_bp","value":120},
            {"kind":"infusion_rate","value":20},{"kind":"diastolic_bp","value":80}]}"#;
        let r = measurements(&records(&id("mon-1"), payload).unwrap());
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

    proptest::proptest! {
        #[test]
        fn every_valid_reading_is_rendered_once(hr in 20.0f64..300.0, sys in 40.0f64..300.0, dia in 20.0f64..200.0, seq in 0u64..u64::MAX / 2) {
            let payload = format!(
                r#"{{"schema":1,"seq":{seq},"ts":"2026-11-29T04:00:00Z","readings":[{{"kind":"diastolic_bp","value":{dia}}},{{"kind":"heart_rate","value":{hr}}},{{"kind":"systolic_bp","value":{sys}}}]}}"#
            );
            let r = measurements(&records(&id("d"), payload.as_bytes()).unwrap());
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
