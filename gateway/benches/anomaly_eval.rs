//! Evaluation of the anomaly detector on the labelled scenarios of
//! `device-sim/scenarios/`, in simulated time:
//!
//! `cargo bench -p gateway --bench anomaly_eval`
//!
//! Each scenario's timeline (the same one `device-sim` runs live) goes
//! through the edge's real controls (`SimulatedEdge`: ACL, payload and
//! range checks, replay) and the real `Detector` with the default
//! `[anomaly]` settings, ticking once a simulated second; the default
//! responses are applied (a quarantined device is confined by the
//! simulated edge too). Printed per attack kind: detected or not, time from
//! the attack's start to its first alert of the expected kind for the
//! right subject; and the false positives: every alert of the clean hour
//! (50 devices, clinical events included), and every alert of the attack
//! scenario that no attack explains. Goal: every kind within 10 s, zero
//! false positives. The live counterpart (real gateway, real TLS, real
//! time) is the test `gateway/tests/anomaly_attacks.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use device_sim::scenario::Scenario;
use device_sim::ward::{Action, Timeline};
use gateway::anomaly::Finding;
use gateway::config::AnomalyConfig;

#[path = "../tests/sim_ward/mod.rs"]
mod sim_ward;
use sim_ward::simulate;

/// How long after an attack ends its alerts are still explained by it.
const AFTERMATH: Duration = Duration::from_secs(60);

fn load(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../device-sim/scenarios")
        .join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn main() {
    let cfg = AnomalyConfig::default();
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();

    // False positives on the clean hour.
    let clean = load("clean-hour.toml");
    let t = Timeline::build(&clean, 0, start).expect("clean scenario");
    let publishes = t
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Publish { .. }))
        .count();
    let wall = Instant::now();
    let fp = simulate(&t, &cfg, start);
    println!(
        "clean ward: {} devices, {} simulated, {publishes} messages, replayed in {:.1?}",
        t.devices.len(),
        humantime::format_duration(t.duration),
        wall.elapsed()
    );
    println!("false positives on the clean hour: {}", fp.len());
    for f in &fp {
        println!("  FP {} {} {} {}", f.at, f.subject, f.kind, f.evidence);
    }

    // Detection of every labelled attack.
    let attacks = load("labelled-attacks.toml");
    let t = Timeline::build(&attacks, 0, start).expect("attack scenario");
    let found = simulate(&t, &cfg, start);
    println!();
    println!(
        "{:<20} {:<20} {:<10} {:>16}",
        "attack", "expected alert", "detected", "time to detect"
    );
    let mut explained = vec![false; found.len()];
    let mut all_within = true;
    let mut rows = BTreeMap::new();
    for a in &t.attacks {
        let subject = if a.kind.alert_names_peer() {
            None
        } else {
            Some(format!("device:{}", a.device))
        };
        let begin = start + chrono::Duration::from_std(a.start).unwrap_or_default();
        let end = start + chrono::Duration::from_std(a.end + AFTERMATH).unwrap_or_default();
        let mut first: Option<chrono::Duration> = None;
        for (i, f) in found.iter().enumerate() {
            let ours = match &subject {
                Some(s) => &f.subject == s,
                None => f.subject.starts_with("peer:"),
            };
            if ours && f.at >= begin && f.at <= end {
                explained[i] = true;
                if f.kind.as_str() == a.kind.expected_alert() {
                    let d = f.at - begin;
                    first = Some(first.map_or(d, |x| x.min(d)));
                }
            }
        }
        let within = first.is_some_and(|d| d <= chrono::Duration::seconds(10));
        all_within &= within;
        rows.insert(
            a.kind,
            format!(
                "{:<20} {:<20} {:<10} {:>16}",
                a.kind.as_str(),
                a.kind.expected_alert(),
                if first.is_some() { "yes" } else { "NO" },
                first.map_or("-".to_owned(), |d| format!(
                    "{:.1} s",
                    d.num_milliseconds() as f64 / 1000.0
                )),
            ),
        );
    }
    for r in rows.values() {
        println!("{r}");
    }
    let unexplained: Vec<&Finding> = found
        .iter()
        .zip(&explained)
        .filter(|(_, e)| !**e)
        .map(|(f, _)| f)
        .collect();
    println!(
        "alerts in the attack scenario: {} ({} explained by an attack, {} false positives)",
        found.len(),
        found.len() - unexplained.len(),
        unexplained.len()
    );
    for f in &unexplained {
        println!("  FP {} {} {} {}", f.at, f.subject, f.kind, f.evidence);
    }
    println!();
    println!(
        "goal (every kind detected within 10 s, zero false positives): {}",
        if all_within && fp.is_empty() && unexplained.is_empty() {
            "met"
        } else {
            "NOT met"
        }
    );
}
