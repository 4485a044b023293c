//! Golden-file tests per upstream renderer, and the FHIR output checked by
//! an independent validator: `fhir.resources` (python), R4B models.
//!
//! Set `WARDGATE_UPDATE_GOLDEN=1` to rewrite the golden files after an
//! intended change, then review the diff.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use gateway::render::{self, Format};
use gateway::uplink::PendingMessage;
use wardgate_protocol::DeviceId;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Fixed inputs: one message per shape the renderers handle.
fn cases() -> Vec<(&'static str, PendingMessage)> {
    let msg = |device: &str, seq: u64, payload: &str| PendingMessage {
        id: 1,
        device_id: DeviceId::parse(device).unwrap(),
        seq,
        topic: format!("wardgate/v1/devices/{device}/telemetry"),
        received_at: at("2026-11-29T04:00:01.125Z"),
        payload: payload.as_bytes().to_vec(),
    };
    vec![
        (
            "monitor_all_vitals",
            msg(
                "monitor-12",
                4711,
                r#"{"schema":1,"seq":4711,"ts":"2026-11-29T04:00:00.500Z","readings":[{"kind":"heart_rate","value":72.0},{"kind":"spo2","value":97.0},{"kind":"respiratory_rate","value":16.0},{"kind":"temperature","value":37.2},{"kind":"systolic_bp","value":121.0},{"kind":"diastolic_bp","value":79.0}]}"#,
            ),
        ),
        (
            "pump_infusion_and_diastolic_only",
            msg(
                "pump-07",
                3,
                r#"{"schema":1,"seq":3,"ts":"2026-11-29T03:59:58Z","readings":[{"kind":"infusion_rate","value":12.5},{"kind":"diastolic_bp","value":60.0}]}"#,
            ),
        ),
    ]
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("WARDGATE_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with WARDGATE_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "rendering differs from {}",
        path.display()
    );
}

fn fhir_array(message: &PendingMessage) -> Vec<serde_json::Value> {
    render::render(Format::Fhir, &message.message())
        .unwrap()
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

#[test]
fn json_renderer_matches_golden_files_and_is_the_payload_as_received() {
    for (name, message) in cases() {
        let out = render::render(Format::Json, &message.message()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0], message.payload,
            "JSON rendering is the device payload byte for byte"
        );
        check_golden(
            &format!("{name}.json.golden"),
            &String::from_utf8(out[0].clone()).unwrap(),
        );
    }
}

#[test]
fn fhir_renderer_matches_golden_files() {
    for (name, message) in cases() {
        let pretty = serde_json::to_string_pretty(&fhir_array(&message)).unwrap() + "\n";
        check_golden(&format!("{name}.fhir.golden.json"), &pretty);
    }
}

#[test]
fn upstream_topics_per_format() {
    let pump_07 = DeviceId::parse("pump-07").unwrap();
    assert_eq!(
        render::upstream_topic("wardgate/ward-7", Format::Json, &pump_07),
        "wardgate/ward-7/devices/pump-07/telemetry"
    );
    assert_eq!(
        render::upstream_topic("wardgate/ward-7", Format::Fhir, &pump_07),
        "wardgate/ward-7/devices/pump-07/fhir/Observation"
    );
}

const CHECKER: &str = r#"
import json, sys
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.device import Device
LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
resources = json.load(sys.stdin)
for raw in resources:
    if raw.get("resourceType") == "Device":
        dev = Device.model_validate(raw)
        assert dev.manufacturer and dev.version and dev.deviceName, raw
        continue
    obs = Observation.model_validate(raw)          # structure, types, cardinality
    assert obs.status == "final", obs.status
    cats = [c.code for cc in obs.category for c in cc.coding]
    assert "vital-signs" in cats, cats
    systems = {c.system for c in obs.code.coding}
    assert LOINC in systems and MDC in systems, systems
    assert obs.effectiveDateTime is not None
    assert obs.device.reference.startswith("Device/"), obs.device.reference
    quantities = [obs.valueQuantity] if obs.valueQuantity else [c.valueQuantity for c in obs.component]
    assert quantities, "no value"
    for q in quantities:
        assert q.system == UCUM and q.code, q
    if obs.component:
        codes = {c.code for c in obs.code.coding}
        assert "85354-9" in codes, codes
print("ok", len(resources))
"#;

fn run_checker(resources: &[serde_json::Value]) -> (bool, String) {
    let python = wardgate_tests::python::python().unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(&python)
        .args(["-c", CHECKER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup-test-deps", python.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(resources).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("No module named") {
        panic!(
            "fhir.resources is missing from {}: run scripts/setup-test-deps\n{text}",
            python.display()
        );
    }
    (out.status.success(), text)
}

#[test]
fn fhir_output_validates_with_fhir_resources_r4b() {
    let mut all = Vec::new();
    for (_, message) in cases() {
        all.extend(fhir_array(&message));
    }
    assert_eq!(
        all.len(),
        6,
        "5 single vitals + 1 BP panel; infusion rate is not a FHIR vital sign"
    );
    all.push(render::fhir::device(&device_info()));
    let (ok, text) = run_checker(&all);
    assert!(ok, "fhir.resources refused our resources:\n{text}");
    assert!(text.contains("ok 7"), "{text}");
}

fn device_info() -> render::fhir::DeviceInfo {
    render::fhir::DeviceInfo {
        id: DeviceId::parse("monitor-12").unwrap(),
        manufacturer: "Acme Medical".into(),
        model: "PM-100".into(),
        hardware_id: "pm-100-rev-b".into(),
        firmware_version: "2.4.1".into(),
        active: true,
    }
}

#[test]
fn fhir_device_matches_golden_file() {
    let pretty =
        serde_json::to_string_pretty(&render::fhir::device(&device_info())).unwrap() + "\n";
    check_golden("device_monitor.fhir.golden.json", &pretty);
}

#[test]
fn fhir_checker_refuses_a_broken_observation() {
    // The checker is not a rubber stamp: a wrong type and an unknown
    // element are refused.
    let (_, message) = cases().remove(0);
    let mut obs = fhir_array(&message).remove(0);
    obs["valueQuantity"]["value"] = serde_json::json!("seventy-two");
    let (ok, text) = run_checker(&[obs]);
    assert!(!ok, "{text}");
    let mut obs = fhir_array(&message).remove(0);
    obs["heartRate"] = serde_json::json!(72);
    let (ok, text) = run_checker(&[obs]);
    assert!(!ok, "{text}");
}
