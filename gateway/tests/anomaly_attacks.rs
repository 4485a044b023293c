//! Every labelled attack of `device-sim/scenarios/live-attacks.toml`, run
//! live (real mutual TLS MQTT, real time) against an in-process gateway
//! whose policy quarantines on every device alert: each attack raises the
//! alert kind that detects it, for the right device (or address), within
//! 10 s of its start; each attacked device ends quarantined; the four
//! bystanders kept streaming (one session each, never dropped), stay
//! active and raise nothing. Alerts are in the audit log too.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use device_sim::scenario::Scenario;
use device_sim::ward::{Actor, Timeline};
use device_sim::ward_run::{self, LiveTarget};
use device_sim::DeviceTls;
use gateway::anomaly::AlertStore;
use gateway::config::ResponseAction;
use gateway::registry::DeviceState;
use support::TestGateway;
use tokio_util::sync::CancellationToken;
use wardgate_protocol::DeviceId;

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../device-sim/scenarios")
        .join(name);
    Scenario::load(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_detected_and_quarantined_while_bystanders_stream() {
    support::init_tracing();
    let gw = TestGateway::start_with(|c| {
        for kind in gateway::config::anomaly::ALERT_KINDS {
            c.anomaly
                .response
                .insert(kind.to_owned(), ResponseAction::Quarantine);
        }
        c.anomaly.response.remove("events_dropped");
    })
    .await;
    let scenario = scenario("live-attacks.toml");
    let start = Utc::now();
    let timeline = Timeline::build(&scenario, 0, start).unwrap();
    let mut certs: HashMap<DeviceId, DeviceTls> = HashMap::new();
    for d in &timeline.devices {
        certs.insert(d.id.clone(), gw.enroll(d.id.as_str()));
    }
    let ca_pem = certs.values().next().unwrap().ca_pem.clone();
    let certs = Arc::new(certs);
    let target = LiveTarget {
        host: "localhost".into(),
        port: gw.port(),
        ca_pem,
        certificates: Arc::new(move |id: &DeviceId| certs.get(id).cloned()),
    };
    let report = ward_run::run(&timeline, &target, CancellationToken::new()).await;

    let store = AlertStore::open(&gw.handle().context.db_path).unwrap();
    // The detector may still be writing the last ones.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let alerts = store.list(1000, false).unwrap();
    let mut failures = Vec::new();
    for attack in &timeline.attacks {
        let expected = attack.kind.expected_alert();
        let subject = if attack.kind.alert_names_peer() {
            "peer:127.0.0.1".to_owned()
        } else {
            format!("device:{}", attack.device)
        };
        let begun = start + chrono::Duration::from_std(attack.start).unwrap();
        let hit = alerts
            .iter()
            .filter(|a| a.kind.as_str() == expected && a.subject == subject)
            .min_by_key(|a| a.at);
        match hit {
            None => failures.push(format!(
                "{}: no {expected} alert for {subject}",
                attack.kind
            )),
            Some(a) => {
                let delay = a.at - begun;
                eprintln!(
                    "{:<20} {expected:<20} after {:>6} ms",
                    attack.kind,
                    delay.num_milliseconds()
                );
                if delay > chrono::Duration::seconds(10) {
                    failures.push(format!("{}: detected after {delay}", attack.kind));
                }
                if !attack.kind.alert_names_peer() {
                    let state = gw.state(&attack.device);
                    if state != DeviceState::Quarantined {
                        failures.push(format!("{}: {} is {state}", attack.kind, attack.device));
                    }
                }
            }
        }
    }
    let attacked: Vec<&DeviceId> = timeline.attacks.iter().map(|a| &a.device).collect();
    for d in &timeline.devices {
        if attacked.contains(&&d.id) {
            continue;
        }
        let seen = &report.actors[&Actor::Device(d.id.clone())];
        if seen.sessions != 1 || seen.dropped != 0 || seen.failures != 0 || seen.publishes < 15 {
            failures.push(format!(
                "bystander {} did not stream undisturbed: {seen:?}",
                d.id
            ));
        }
        let subject = format!("device:{}", d.id);
        if let Some(a) = alerts.iter().find(|a| a.subject == subject) {
            failures.push(format!("bystander {} raised {:?}", d.id, a.kind));
        }
        let state = gw.state(&d.id);
        if state != DeviceState::Active {
            failures.push(format!("bystander {} is {state}", d.id));
        }
    }
    let audited = gw.handle().context.audit.all().unwrap();
    let alert_rows = audited
        .iter()
        .filter(|r| r.action == "anomaly.alert")
        .count();
    assert_eq!(alert_rows, alerts.len(), "one audit row per alert");
    assert!(
        failures.is_empty(),
        "{failures:#?}\nalerts: {:#?}",
        alerts
            .iter()
            .map(|a| (a.subject.clone(), a.kind, a.at - start))
            .collect::<Vec<_>>()
    );
}
