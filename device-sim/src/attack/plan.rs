//! How each attack rewrites one device's plan inside its window.
//!
//! Offending single packets (malformed, oversized, spoofed, replayed,
//! impossible values) are sent at the start and every ten seconds after;
//! the edge disconnects the device each time and the device's next reading
//! reconnects it, as real clients do. Continuous attacks (flood, churn,
//! connect flood, tampered vitals, a thief's sessions, silence) last the
//! whole window.

use std::time::Duration;

use wardgate_protocol::{DeviceId, Reading, VitalKind};

use super::{AttackKind, AttackWindow};
use crate::steps::{Actor, Entry, Planned, Tamper};

/// Messages per second of the publish flood (within the edge's default
/// limit of 50, so only behaviour gives it away).
pub const FLOOD_RATE: u32 = 40;
/// Untrusted connections per second of the connect flood.
pub const CONNECT_FLOOD_RATE: u32 = 4;
/// Period of repeated single-packet attacks.
const REPEAT: Duration = Duration::from_secs(10);

fn every(window: &AttackWindow, period: Duration) -> impl Iterator<Item = Duration> + '_ {
    let mut at = window.start;
    std::iter::from_fn(move || {
        if at >= window.end || period.is_zero() {
            return None;
        }
        let now = at;
        at += period;
        Some(now)
    })
}

/// Rewrite `plan` (one device's entries) for `window`; `ward` lists every
/// device (for spoofing a neighbour); `interval` is the device's own.
pub fn plan(window: &AttackWindow, plan: &mut Vec<Entry>, ward: &[DeviceId], interval: Duration) {
    let device = window.device.clone();
    let me = Actor::Device(device.clone());
    let in_window = |at: Duration| at >= window.start && at < window.end;
    let push = |plan: &mut Vec<Entry>, at, actor: &Actor, what| {
        plan.push(Entry {
            at,
            actor: actor.clone(),
            what,
        });
    };
    match window.kind {
        AttackKind::PublishFlood => {
            for at in every(window, Duration::from_secs(1) / FLOOD_RATE) {
                push(plan, at, &me, Planned::Vitals(Tamper::None));
            }
        }
        AttackKind::ConnectFlood => {
            for at in every(window, Duration::from_secs(1) / CONNECT_FLOOD_RATE) {
                push(plan, at, &Actor::Stranger, Planned::ConnectUntrusted);
            }
        }
        AttackKind::ConnectionChurn => {
            for at in every(window, Duration::from_secs(1)) {
                push(plan, at, &me, Planned::Disconnect);
                push(plan, at + Duration::from_millis(300), &me, Planned::Connect);
            }
        }
        AttackKind::MalformedPayload => {
            for at in every(window, REPEAT) {
                push(
                    plan,
                    at,
                    &me,
                    Planned::Raw(b"{\"schema\":1,\"seq\":<not json>".to_vec()),
                );
            }
        }
        AttackKind::OversizedPayload => {
            for at in every(window, REPEAT) {
                let mut big = b"{\"schema\":1,\"pad\":\"".to_vec();
                big.resize(20_000, b'x');
                big.extend_from_slice(b"\"}");
                push(plan, at, &me, Planned::Raw(big));
            }
        }
        AttackKind::TopicSpoofing => {
            let target = ward
                .iter()
                .find(|d| **d != device)
                .cloned()
                .unwrap_or_else(|| device.clone());
            for at in every(window, REPEAT) {
                push(plan, at, &me, Planned::Spoof(target.clone()));
            }
        }
        AttackKind::Replay => {
            for at in every(window, REPEAT) {
                push(plan, at, &me, Planned::Replay(3));
            }
        }
        AttackKind::ImpossibleValues => {
            for at in every(window, REPEAT) {
                let readings = vec![
                    Reading {
                        kind: VitalKind::HeartRate,
                        value: 400.0,
                    },
                    Reading {
                        kind: VitalKind::Spo2,
                        value: 97.0,
                    },
                ];
                push(plan, at, &me, Planned::Readings(readings));
            }
        }
        AttackKind::ImpossibleJumps => {
            let mut up = true;
            for e in plan.iter_mut() {
                if in_window(e.at) && matches!(e.what, Planned::Vitals(_)) {
                    e.what = Planned::Vitals(Tamper::Jump(up));
                    up = !up;
                }
            }
        }
        AttackKind::FrozenValues => {
            for e in plan.iter_mut() {
                if in_window(e.at) && matches!(e.what, Planned::Vitals(_)) {
                    e.what = Planned::Vitals(Tamper::Freeze);
                }
            }
        }
        AttackKind::StolenCertificate => {
            // The thief holds a session under the device's identity and
            // takes it again whenever it is taken from it.
            let thief = Actor::Thief(device.clone());
            for at in every(window, Duration::from_secs(2)) {
                push(plan, at, &thief, Planned::Connect);
            }
            push(plan, window.end, &thief, Planned::Disconnect);
        }
        AttackKind::SlowDrip => {
            // Readings stop; a fresh session is opened and left silent.
            plan.retain(|e| !(in_window(e.at) && matches!(e.what, Planned::Vitals(_))));
            push(plan, window.start, &me, Planned::Disconnect);
            push(
                plan,
                window.start + interval.min(Duration::from_millis(200)),
                &me,
                Planned::Connect,
            );
        }
    }
}
