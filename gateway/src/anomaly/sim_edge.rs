//! The edge's decisions on a recorded timeline, without sockets, in
//! simulated time: what lets the evaluation replay an hour of a ward
//! through the real controls and the real detector in seconds.
//!
//! [`SimulatedEdge::step`] applies, per PUBLISH, the edge's own
//! [`DevicePolicy`] (topic ACL, direction, size, schema, ranges) and
//! [`SeqTracker`] (replay), and produces the [`Observation`]s the live
//! edge's events would: a session opened (taking over an open session of
//! the same identity, as the embedded broker does with a duplicate client
//! id), a publish accepted, or a violation followed by the disconnect; a
//! connection without a ward certificate is refused in the handshake. The
//! per-device token-bucket rate limit is not applied (it reads the wall
//! clock); simulated floods stay under it, as the live ones do.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use chrono::{DateTime, Utc};
use wardgate_protocol::{DeviceId, DeviceMessage};

use super::alert::Finding;
use super::detector::Detector;
use super::signal::{Observation, Signal};
use crate::config::{AnomalyConfig, ResponseAction};
use crate::edge::policy::DevicePolicy;
use crate::edge::replay::SeqTracker;
use crate::registry::DeviceState;

/// What a party does, as the edge sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimAction<'a> {
    /// Open an MQTT session with the device's certificate (no-op if this
    /// party has one open).
    Connect,
    /// Close it.
    Disconnect,
    /// A TLS connection without a ward certificate.
    ConnectUntrusted,
    /// A QoS 1 PUBLISH (connecting first if this party has no session).
    Publish {
        /// Topic.
        topic: &'a str,
        /// Payload.
        payload: &'a [u8],
        /// RETAIN.
        retain: bool,
    },
}

#[derive(Debug)]
struct Open {
    device: DeviceId,
    peer: SocketAddr,
}

/// The edge of a simulated ward.
#[derive(Debug)]
pub struct SimulatedEdge {
    max_payload: usize,
    /// Open session per party (party key as the caller names it).
    sessions: HashMap<String, Open>,
    /// Which party holds each device's session.
    holder: HashMap<DeviceId, String>,
    /// Registry state per device (quarantine confines).
    states: HashMap<DeviceId, DeviceState>,
    addresses: HashMap<String, Ipv4Addr>,
    seqs: SeqTracker,
    next_port: u16,
}

impl SimulatedEdge {
    /// An edge refusing payloads above `max_payload` bytes.
    #[must_use]
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload,
            sessions: HashMap::new(),
            holder: HashMap::new(),
            states: HashMap::new(),
            addresses: HashMap::new(),
            seqs: SeqTracker::default(),
            next_port: 40_000,
        }
    }

    /// Set a device's registry state (a quarantine response).
    pub fn set_state(&mut self, device: &DeviceId, state: DeviceState) {
        self.states.insert(device.clone(), state);
    }

    fn peer(&mut self, party: &str) -> SocketAddr {
        let n = u32::try_from(self.addresses.len()).unwrap_or(0);
        let ip = *self
            .addresses
            .entry(party.to_owned())
            .or_insert_with(|| Ipv4Addr::from(0x0a00_0000 + n + 1));
        self.next_port = self.next_port.checked_add(1).unwrap_or(40_000);
        SocketAddr::from((ip, self.next_port))
    }

    fn close(&mut self, party: &str, at: DateTime<Utc>, reason: &str, out: &mut Vec<Observation>) {
        if let Some(open) = self.sessions.remove(party) {
            if self.holder.get(&open.device).is_some_and(|h| h == party) {
                self.holder.remove(&open.device);
            }
            out.push(Observation {
                at,
                peer: Some(open.peer),
                signal: Signal::SessionClosed {
                    device: open.device,
                    reason: reason.to_owned(),
                },
            });
        }
    }

    fn connect(
        &mut self,
        at: DateTime<Utc>,
        party: &str,
        device: &DeviceId,
        out: &mut Vec<Observation>,
    ) {
        if self.sessions.contains_key(party) {
            return;
        }
        let peer = self.peer(party);
        out.push(Observation {
            at,
            peer: Some(peer),
            signal: Signal::SessionOpened {
                device: device.clone(),
            },
        });
        // The broker drops the previous connection of a duplicate client id.
        if let Some(previous) = self.holder.get(device).cloned() {
            self.close(&previous, at, "broker connection lost", out);
        }
        self.sessions.insert(
            party.to_owned(),
            Open {
                device: device.clone(),
                peer,
            },
        );
        self.holder.insert(device.clone(), party.to_owned());
    }

    /// What the edge reports for `party` (using `device`'s identity, or
    /// none) doing `action` at `at`.
    pub fn step(
        &mut self,
        at: DateTime<Utc>,
        party: &str,
        device: Option<&DeviceId>,
        action: SimAction<'_>,
    ) -> Vec<Observation> {
        let mut out = Vec::new();
        match (action, device) {
            (SimAction::ConnectUntrusted, _) | (_, None) => {
                let peer = self.peer(party);
                out.push(Observation {
                    at,
                    peer: Some(peer),
                    signal: Signal::Refused {
                        device: None,
                        reason: "tls_handshake".into(),
                    },
                });
            }
            (SimAction::Connect, Some(d)) => self.connect(at, party, d, &mut out),
            (SimAction::Disconnect, Some(_)) => {
                self.close(party, at, "device sent DISCONNECT", &mut out);
            }
            (
                SimAction::Publish {
                    topic,
                    payload,
                    retain,
                },
                Some(d),
            ) => {
                self.connect(at, party, d, &mut out);
                let state = self.states.get(d).copied().unwrap_or(DeviceState::Active);
                let policy = DevicePolicy::new(d.clone(), state, self.max_payload);
                let checked =
                    policy
                        .check_publish(topic, 1, retain, payload)
                        .and_then(|(kind, message)| {
                            self.seqs.advance(d, message.seq())?;
                            Ok((kind, message))
                        });
                let peer = self.sessions.get(party).map(|o| o.peer);
                match checked {
                    Ok((kind, message)) => out.push(Observation {
                        at,
                        peer: None,
                        signal: Signal::Publish {
                            device: d.clone(),
                            kind,
                            size: payload.len(),
                            readings: match message {
                                DeviceMessage::Telemetry(t) => Some(t.readings),
                                _ => None,
                            },
                        },
                    }),
                    Err(v) => {
                        out.push(Observation {
                            at,
                            peer,
                            signal: Signal::Violation {
                                device: d.clone(),
                                reason: v.reason().to_owned(),
                                detail: v.to_string(),
                            },
                        });
                        self.close(party, at, "violation", &mut out);
                    }
                }
            }
        }
        out
    }
}

/// One step of a recorded timeline.
#[derive(Debug, Clone, Copy)]
pub struct SimStep<'a> {
    /// Offset from the start.
    pub at: std::time::Duration,
    /// Who acts (a stable name per party: the device, a thief, a stranger).
    pub party: &'a str,
    /// The identity it uses, if it has a ward certificate.
    pub device: Option<&'a DeviceId>,
    /// What it does.
    pub action: SimAction<'a>,
}

/// Replay `steps` (in time order) through a [`SimulatedEdge`] and a
/// [`Detector`] with `cfg`, ticking every simulated second until
/// `duration`, applying quarantine responses to the simulated edge; the
/// findings, in order. Time is `start` plus each step's offset.
pub fn replay<'a>(
    steps: impl IntoIterator<Item = SimStep<'a>>,
    duration: std::time::Duration,
    cfg: &AnomalyConfig,
    max_payload: usize,
    start: DateTime<Utc>,
) -> Vec<Finding> {
    let mut edge = SimulatedEdge::new(max_payload);
    let mut det = Detector::new(cfg.clone());
    let mut found = Vec::new();
    let second = std::time::Duration::from_secs(1);
    let mut next_tick = second;
    let at = |d: std::time::Duration| start + chrono::Duration::from_std(d).unwrap_or_default();
    let keep = |f: Vec<Finding>, edge: &mut SimulatedEdge, found: &mut Vec<Finding>| {
        for f in f {
            if let (ResponseAction::Quarantine, Some(d)) =
                (cfg.response_to(f.kind.as_str()), &f.device)
            {
                edge.set_state(d, DeviceState::Quarantined);
            }
            found.push(f);
        }
    };
    for step in steps {
        while next_tick <= step.at {
            let f = det.tick(at(next_tick));
            keep(f, &mut edge, &mut found);
            next_tick += second;
        }
        for obs in edge.step(at(step.at), step.party, step.device, step.action) {
            let f = det.observe(&obs);
            keep(f, &mut edge, &mut found);
        }
    }
    while next_tick <= duration {
        let f = det.tick(at(next_tick));
        keep(f, &mut edge, &mut found);
        next_tick += second;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeover_violation_and_refusal() {
        let mut edge = SimulatedEdge::new(4096);
        let d = DeviceId::parse("monitor-01").unwrap();
        let t = Utc::now();
        let o = edge.step(t, "dev", Some(&d), SimAction::Connect);
        assert!(matches!(o[0].signal, Signal::SessionOpened { .. }));
        let o = edge.step(t, "thief", Some(&d), SimAction::Connect);
        assert_eq!(o.len(), 2, "opened, then the device's session dropped");
        let o = edge.step(
            t,
            "dev",
            Some(&d),
            SimAction::Publish {
                topic: "wardgate/v1/devices/monitor-02/telemetry",
                payload: b"{}",
                retain: false,
            },
        );
        // Reconnect (taking over from the thief), then the violation.
        assert!(
            o.iter().any(
                |x| matches!(&x.signal, Signal::Violation { reason, .. } if reason == "acl_topic")
            ),
            "{o:?}"
        );
        let o = edge.step(t, "stranger", None, SimAction::ConnectUntrusted);
        assert!(matches!(o[0].signal, Signal::Refused { .. }));
    }
}
