//! Clean data raises nothing: a ward with real clinical events (a
//! desaturation, tachycardia episodes, a pump titration) replayed in
//! simulated time through the edge's controls and the detector with the
//! default settings gives no alert, while the same ward with one
//! impossible jump does. (The full clean hour of 50 devices is in
//! `cargo bench -p gateway --bench anomaly_eval`.)

use std::time::Duration;

use chrono::{TimeZone, Utc};
use device_sim::scenario::Scenario;
use device_sim::ward::Timeline;
use gateway::anomaly::Finding;
use gateway::config::AnomalyConfig;

mod sim_ward;
use sim_ward::simulate;

const WARD: &str = r#"
name = "clinical-events"
seed = 21
duration = "20m"
[[devices]]
kind = "patient_monitor"
count = 6
prefix = "monitor"
interval = "1s"
[[devices]]
kind = "pulse_oximeter"
count = 3
prefix = "oximeter"
interval = "2s"
[[devices]]
kind = "infusion_pump"
count = 3
prefix = "pump"
interval = "5s"
[[clinical]]
device = "monitor-01"
event = "desaturation"
at = "2m"
[[clinical]]
device = "monitor-02"
event = "tachycardia"
at = "3m"
[[clinical]]
device = "oximeter-01"
event = "desaturation"
at = "5m"
[[clinical]]
device = "monitor-01"
event = "tachycardia"
at = "4m"
"#;

fn run(text: &str) -> Vec<Finding> {
    let scenario = Scenario::parse(text).unwrap();
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
    let t = Timeline::build(&scenario, 0, start).unwrap();
    simulate(&t, &AnomalyConfig::default(), start)
}

#[test]
fn clinical_events_in_clean_data_raise_no_alert() {
    let found = run(WARD);
    assert!(found.is_empty(), "false positives: {found:#?}");
}

#[test]
fn the_same_ward_with_an_impossible_jump_does() {
    let attacked = format!(
        "{WARD}[[attacks]]\nkind = \"impossible_jumps\"\ndevice = \"monitor-02\"\nat = \"3m10s\"\nduration = \"10s\"\n"
    );
    let found = run(&attacked);
    assert!(!found.is_empty());
    assert!(
        found
            .iter()
            .all(|f| f.subject == "device:monitor-02" && f.kind.as_str() == "implausible_change"),
        "{found:#?}"
    );
    let _ = Duration::ZERO;
}
