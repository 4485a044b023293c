//! A ward, not a loop: devices of several kinds, each with its own
//! certificate, `seq`, status and reading rate, turned into one timeline
//! of what every party does and when.
//!
//! [`Timeline::build`] expands a [`Scenario`] into [`Step`]s in time order:
//! each device connects (at a random offset), publishes its status and then
//! telemetry from its [`Patient`] at its interval; clinical events shape
//! the vitals; each attack rewrites its device's plan inside its window
//! ([`crate::attack::plan`]) and adds the attacker's own connections. The
//! same timeline is executed live against a gateway
//! ([`crate::ward_run`]) or replayed in simulated time by the gateway's
//! evaluation, so both see the same ward. Payloads are complete wire
//! messages (JSON with `schema`, `seq`, `ts`), so nothing is invented later.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wardgate_protocol::{topic, DeviceId, Reading, Status, Telemetry, TopicKind, SCHEMA_VERSION};

use crate::attack::{self, AttackWindow};
use crate::patient::Patient;
use crate::scenario::{Scenario, ScenarioError};
pub use crate::steps::{Action, Actor, DeviceKind, Entry, Planned, Step, Tamper, WardDevice};

/// The whole ward's timeline.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The scenario's name.
    pub name: String,
    /// Its length.
    pub duration: Duration,
    /// The devices.
    pub devices: Vec<WardDevice>,
    /// Every step, in time order.
    pub steps: Vec<Step>,
    /// The labelled attacks.
    pub attacks: Vec<AttackWindow>,
}

impl Timeline {
    /// Expand `scenario`. Each device's `seq` starts after `seq_base`
    /// (a real device keeps it across restarts; use the wall clock in
    /// milliseconds for live runs against a gateway that has seen the ward
    /// before); device time `ts` is `start` plus the step's offset.
    ///
    /// # Errors
    /// [`ScenarioError::Invalid`] if a device id cannot be made.
    pub fn build(
        scenario: &Scenario,
        seq_base: u64,
        start: DateTime<Utc>,
    ) -> Result<Self, ScenarioError> {
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        let ids = scenario.device_ids()?;
        let devices: Vec<WardDevice> = ids
            .iter()
            .map(|(id, g)| WardDevice {
                id: id.clone(),
                kind: g.kind,
                interval: g.interval,
            })
            .collect();
        let all_ids: Vec<DeviceId> = devices.iter().map(|d| d.id.clone()).collect();
        let mut plans: HashMap<DeviceId, Vec<Entry>> = HashMap::new();
        let mut patients: HashMap<DeviceId, Patient> = HashMap::new();
        for (n, d) in devices.iter().enumerate() {
            let offset_ms = rng.gen_range(0..d.interval.as_millis().clamp(1, 5000) as u64);
            let first = Duration::from_millis(offset_ms);
            let actor = Actor::Device(d.id.clone());
            let mut plan = vec![
                Entry {
                    at: first,
                    actor: actor.clone(),
                    what: Planned::Connect,
                },
                Entry {
                    at: first,
                    actor: actor.clone(),
                    what: Planned::Status,
                },
            ];
            let mut at = first + d.interval;
            while at < scenario.duration {
                plan.push(Entry {
                    at,
                    actor: actor.clone(),
                    what: Planned::Vitals(Tamper::None),
                });
                at += d.interval;
            }
            plans.insert(d.id.clone(), plan);
            patients.insert(
                d.id.clone(),
                Patient::new(
                    scenario.seed.wrapping_mul(1_000_003).wrapping_add(n as u64),
                    d.kind.measures(),
                ),
            );
        }
        for c in &scenario.clinical {
            if let Some(p) = patients.get_mut(&c.device) {
                p.schedule(c.at, c.event);
            }
        }
        let mut attacks = Vec::new();
        for a in &scenario.attacks {
            let window = AttackWindow {
                kind: a.kind,
                device: a.device.clone(),
                start: a.at,
                end: a.at + a.duration,
            };
            if let Some(plan) = plans.get_mut(&a.device) {
                let victim_interval = devices
                    .iter()
                    .find(|d| d.id == a.device)
                    .map_or(Duration::from_secs(1), |d| d.interval);
                attack::plan(&window, plan, &all_ids, victim_interval);
            }
            attacks.push(window);
        }
        let mut steps = Vec::new();
        for d in &devices {
            let Some(mut plan) = plans.remove(&d.id) else {
                continue;
            };
            let Some(patient) = patients.get_mut(&d.id) else {
                continue;
            };
            plan.sort_by_key(|e| e.at);
            realize(d, plan, patient, seq_base, start, &mut steps);
        }
        steps.sort_by_key(|s| s.at);
        Ok(Self {
            name: scenario.name.clone(),
            duration: scenario.duration,
            devices,
            steps,
            attacks,
        })
    }
}

fn telemetry_bytes(seq: u64, ts: DateTime<Utc>, readings: Vec<Reading>) -> Vec<u8> {
    let t = Telemetry {
        schema: SCHEMA_VERSION,
        seq,
        ts,
        readings,
    };
    // Serialising a plain struct of numbers and strings cannot fail.
    serde_json::to_vec(&t).unwrap_or_default()
}

/// `payload` (a telemetry message this device sent) with its `ts` set to
/// `ts`; unchanged if it does not parse (it always does: it is our own).
fn restamp(payload: &[u8], ts: DateTime<Utc>) -> Vec<u8> {
    match serde_json::from_slice::<Telemetry>(payload) {
        Ok(mut t) => {
            t.ts = ts;
            serde_json::to_vec(&t).unwrap_or_else(|_| payload.to_vec())
        }
        Err(_) => payload.to_vec(),
    }
}

/// Turn a device's plan into steps: assign `seq`s in time order, sample
/// the patient, keep the history replays draw from.
fn realize(
    d: &WardDevice,
    plan: Vec<Entry>,
    patient: &mut Patient,
    seq_base: u64,
    start: DateTime<Utc>,
    steps: &mut Vec<Step>,
) {
    let own_topic = topic(&d.id, TopicKind::Telemetry);
    let mut seq = seq_base;
    let mut history: Vec<Vec<u8>> = Vec::new();
    let mut frozen: Option<Vec<Reading>> = None;
    for e in plan {
        let ts = start + chrono::Duration::from_std(e.at).unwrap_or_default();
        let action = match e.what {
            Planned::Connect => Action::Connect,
            Planned::Disconnect => Action::Disconnect,
            Planned::ConnectUntrusted => Action::ConnectUntrusted,
            Planned::Status => {
                seq += 1;
                let s = Status {
                    schema: SCHEMA_VERSION,
                    seq,
                    ts,
                    activity: d.kind.activity(),
                    firmware_version: "1.0.0".into(),
                    battery_pct: None,
                };
                Action::Publish {
                    topic: topic(&d.id, TopicKind::Status),
                    payload: serde_json::to_vec(&s).unwrap_or_default(),
                    retain: true,
                }
            }
            Planned::Vitals(tamper) => {
                let mut readings = patient.sample(e.at);
                match tamper {
                    Tamper::None => frozen = None,
                    Tamper::Jump(up) => {
                        for r in &mut readings {
                            if r.kind == wardgate_protocol::VitalKind::HeartRate {
                                r.value = if up { 165.0 } else { 72.0 };
                            }
                        }
                    }
                    Tamper::Freeze => {
                        readings = frozen.get_or_insert(readings).clone();
                    }
                }
                seq += 1;
                let bytes = telemetry_bytes(seq, ts, readings);
                history.push(bytes.clone());
                Action::Publish {
                    topic: own_topic.clone(),
                    payload: bytes,
                    retain: false,
                }
            }
            Planned::Readings(readings) => {
                seq += 1;
                Action::Publish {
                    topic: own_topic.clone(),
                    payload: telemetry_bytes(seq, ts, readings),
                    retain: false,
                }
            }
            Planned::Raw(payload) => Action::Publish {
                topic: own_topic.clone(),
                payload,
                retain: false,
            },
            Planned::Spoof(target) => {
                seq += 1;
                let readings = patient.sample(e.at);
                Action::Publish {
                    topic: topic(&target, TopicKind::Telemetry),
                    payload: telemetry_bytes(seq, ts, readings),
                    retain: false,
                }
            }
            Planned::Replay(back) => {
                let Some(old) = history
                    .len()
                    .checked_sub(back.max(2))
                    .and_then(|i| history.get(i))
                else {
                    continue;
                };
                // A captured reading sent again under its old `seq` with a
                // fresh timestamp, to pass it off as current. (A byte-identical
                // copy of a recent message is an ordinary QoS 1 resend, which
                // the edge acknowledges without storing it twice.)
                Action::Publish {
                    topic: own_topic.clone(),
                    payload: restamp(old, ts),
                    retain: false,
                }
            }
        };
        steps.push(Step {
            at: e.at,
            actor: e.actor,
            action,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::AttackKind;

    fn scenario(attacks: &str) -> Scenario {
        Scenario::parse(&format!(
            r#"
name = "t"
seed = 3
duration = "2m"
[[devices]]
kind = "patient_monitor"
count = 2
prefix = "monitor"
interval = "1s"
[[devices]]
kind = "infusion_pump"
count = 1
prefix = "pump"
interval = "5s"
{attacks}
"#
        ))
        .unwrap()
    }

    #[test]
    fn clean_ward_has_increasing_seqs_and_valid_messages() {
        let t = Timeline::build(&scenario(""), 1000, Utc::now()).unwrap();
        assert_eq!(t.devices.len(), 3);
        let mut last: HashMap<Actor, u64> = HashMap::new();
        let mut publishes = 0;
        for s in &t.steps {
            if let Action::Publish { topic, payload, .. } = &s.action {
                let kind = wardgate_protocol::DeviceTopic::parse(topic).unwrap().kind;
                let m = wardgate_protocol::DeviceMessage::parse(kind, payload).unwrap();
                let prev = last.insert(s.actor.clone(), m.seq()).unwrap_or(0);
                assert!(m.seq() > prev);
                publishes += 1;
            }
        }
        // 2 monitors x ~119 + 1 pump x ~23, plus statuses.
        assert!(publishes > 250, "{publishes}");
        assert!(t.steps.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn each_attack_changes_the_plan_in_its_window() {
        for kind in AttackKind::ALL {
            let text = format!(
                "[[attacks]]\nkind = \"{kind}\"\ndevice = \"monitor-01\"\nat = \"30s\"\nduration = \"20s\"\n"
            );
            let clean = Timeline::build(&scenario(""), 0, Utc::now()).unwrap();
            let attacked = Timeline::build(&scenario(&text), 0, Utc::now()).unwrap();
            assert_eq!(attacked.attacks.len(), 1);
            let window = |t: &Timeline| -> Vec<Step> {
                t.steps
                    .iter()
                    .filter(|s| s.at >= Duration::from_secs(30) && s.at < Duration::from_secs(50))
                    .cloned()
                    .collect()
            };
            assert_ne!(window(&clean), window(&attacked), "{kind}");
        }
    }
}
