//! A `device-sim` ward timeline replayed through the edge's controls and
//! the detector in simulated time (`gateway::anomaly::sim_edge`): shared by
//! the clean-data test and the `anomaly_eval` benchmark, so both judge the
//! detector on the same translation of a timeline.

use chrono::{DateTime, Utc};
use device_sim::ward::{Action, Actor, Timeline};
use gateway::anomaly::sim_edge::{replay, SimAction, SimStep};
use gateway::anomaly::Finding;
use gateway::config::AnomalyConfig;
use wardgate_protocol::DeviceId;

/// Largest payload the simulated edge accepts (the edge's default limit).
const MAX_PAYLOAD: usize = 16_384;

/// Every finding of the detector over `timeline`, started at `start`.
pub fn simulate(timeline: &Timeline, cfg: &AnomalyConfig, start: DateTime<Utc>) -> Vec<Finding> {
    let parties: Vec<(String, Option<&DeviceId>)> = timeline
        .steps
        .iter()
        .map(|s| match &s.actor {
            Actor::Device(d) => (format!("device:{d}"), Some(d)),
            Actor::Thief(d) => (format!("thief:{d}"), Some(d)),
            Actor::Stranger => ("stranger".to_owned(), None),
        })
        .collect();
    let steps = timeline
        .steps
        .iter()
        .zip(&parties)
        .map(|(s, (party, device))| SimStep {
            at: s.at,
            party,
            device: *device,
            action: match &s.action {
                Action::Connect => SimAction::Connect,
                Action::Disconnect => SimAction::Disconnect,
                Action::ConnectUntrusted => SimAction::ConnectUntrusted,
                Action::Publish {
                    topic,
                    payload,
                    retain,
                } => SimAction::Publish {
                    topic,
                    payload,
                    retain: *retain,
                },
            },
        });
    replay(steps, timeline.duration, cfg, MAX_PAYLOAD, start)
}
