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
//! Resource ids are stable (`<device>-<seq>-<vital>`), so a message the QoS 1
//! uplink delivers twice updates, rather than duplicates, the resource.
//! Infusion rate is not a FHIR vital sign and is sent only in the JSON
//! rendering.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::vital::{self, Code, Vital, VitalRecord, BP_PANEL_LOINC, BP_PANEL_MDC};
use super::RenderError;
use wardgate_protocol::vitals::VitalKind;

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

/// What the FHIR `Device` resource says about a device (from the registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Wardgate device id.
    pub id: String,
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
        "id": fhir_id(&info.id, ""),
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

/// Render `records` as FHIR R4 `Observation` resources.
///
/// # Errors
/// Never at present; the `Result` keeps the renderer signature uniform.
pub fn observations(
    records: &[VitalRecord],
    received_at: DateTime<Utc>,
) -> Result<Vec<Value>, RenderError> {
    Ok(records
        .iter()
        .map(|r| observation(r, received_at))
        .collect())
}

/// One `Observation` for `record`.
#[must_use]
pub fn observation(record: &VitalRecord, received_at: DateTime<Utc>) -> Value {
    let mut obs = json!({
        "resourceType": "Observation",
        "id": resource_id(record),
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
            "reference": format!("Device/{}", record.device_id),
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

/// FHIR ids allow `[A-Za-z0-9\-\.]{1,64}`; device ids are mapped into that.
fn resource_id(record: &VitalRecord) -> String {
    fhir_id(
        &record.device_id,
        &format!("-{}-{}", record.seq, record.vital.slug()),
    )
}

/// `<device><suffix>` mapped into FHIR's id alphabet and length.
fn fhir_id(device_id: &str, suffix: &str) -> String {
    let device: String = device_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let keep = 64usize.saturating_sub(suffix.len());
    let device: String = device.chars().take(keep).collect();
    format!("{device}{suffix}")
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

    fn rec(vital: Vital) -> VitalRecord {
        VitalRecord {
            device_id: "monitor-01".into(),
            seq: 9,
            time: DateTime::parse_from_rfc3339("2026-11-29T04:00:00.250Z")
                .unwrap()
                .with_timezone(&Utc),
            vital,
        }
    }

    #[test]
    fn heart_rate_carries_loinc_mdc_ucum_and_device_time() {
        let o = observation(
            &rec(Vital::Single {
                kind: VitalKind::HeartRate,
                value: 72.0,
            }),
            Utc::now(),
        );
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
        let o = observation(
            &rec(Vital::Single {
                kind: VitalKind::Spo2,
                value: 97.0,
            }),
            Utc::now(),
        );
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
        r.device_id = "a_very/long:device id".repeat(5);
        let id = resource_id(&r);
        assert!(id.len() <= 64);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    }
}
