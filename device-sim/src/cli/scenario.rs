//! `device-sim --scenario`: a ward scenario run live from the command line.
//!
//! The scenario is expanded into its [`Timeline`] with the wall clock as the
//! `seq` base (so a gateway that has seen these devices before takes the new
//! readings as newer), run against the gateway over mutual TLS, and what
//! each actor saw is printed on stdout, one line per actor, so that an
//! operator (or the ward demo) can see which devices streamed undisturbed
//! and which were cut off. With `--repeat` the ward goes on streaming in
//! further rounds of the same length, attacks left out: a ward does not
//! stop because an attack ended.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use wardgate_protocol::DeviceId;

use super::Args;
use crate::fleet::read_device_tls;
use crate::scenario::Scenario;
use crate::ward::{Actor, Timeline};
use crate::ward_run::{self, LiveTarget, RunReport};
use crate::DeviceTls;

/// Runs the scenario at `path` as `args` say; exit code 2 for a scenario
/// or certificate that cannot be used, 0 otherwise (being cut off by the
/// gateway is what an attacker should see, not a failure of the run).
pub async fn run(args: &Args, path: &Path) -> ExitCode {
    let mut scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("device-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let target = match live_target(args, &scenario) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("device-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let (shutdown, signal) = super::cancel_on_ctrl_c();
    let mut round = 1u32;
    loop {
        let seq_base = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let timeline = match Timeline::build(&scenario, seq_base, Utc::now()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("device-sim: {e}");
                return ExitCode::from(2);
            }
        };
        tracing::info!(
            scenario = %timeline.name,
            round,
            devices = timeline.devices.len(),
            attacks = timeline.attacks.len(),
            steps = timeline.steps.len(),
            "running the ward scenario"
        );
        let report = ward_run::run(&timeline, &target, shutdown.clone()).await;
        print_report(&timeline, round, &report);
        if !args.repeat || shutdown.is_cancelled() {
            break;
        }
        scenario.attacks.clear();
        round += 1;
    }
    signal.abort();
    ExitCode::SUCCESS
}

/// The gateway address from `args`, and every device's TLS material read
/// once up front, so that a missing certificate is named before anything
/// connects.
fn live_target(args: &Args, scenario: &Scenario) -> Result<LiveTarget, String> {
    let mut certs: HashMap<DeviceId, DeviceTls> = HashMap::new();
    for (id, _) in scenario.device_ids().map_err(|e| e.to_string())? {
        let tls = read_device_tls(&args.ca, &args.cert_dir, &id).map_err(|e| e.to_string())?;
        certs.insert(id, tls);
    }
    let ca_pem = std::fs::read_to_string(&args.ca)
        .map_err(|e| format!("cannot read --ca {}: {e}", args.ca.display()))?;
    let certs = Arc::new(certs);
    Ok(LiveTarget {
        host: args.host.clone(),
        port: args.port,
        ca_pem,
        certificates: Arc::new(move |id: &DeviceId| certs.get(id).cloned()),
    })
}

/// One line per actor: `round 1 monitor-03 sessions=1 publishes=40
/// dropped=0 failures=0 attack=publish_flood`.
fn print_report(timeline: &Timeline, round: u32, report: &RunReport) {
    for (actor, seen) in &report.actors {
        let (name, device) = match actor {
            Actor::Device(d) => (d.to_string(), Some(d)),
            Actor::Thief(d) => (format!("thief-of-{d}"), Some(d)),
            Actor::Stranger => ("stranger".to_owned(), None),
        };
        let attack = device
            .and_then(|d| timeline.attacks.iter().find(|a| &a.device == d))
            .map(|a| format!(" attack={}", a.kind))
            .unwrap_or_default();
        println!(
            "round {round} {name} sessions={} publishes={} dropped={} failures={}{attack}",
            seen.sessions, seen.publishes, seen.dropped, seen.failures
        );
    }
}
