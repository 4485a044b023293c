//! The detector: per-device online baselines and rules over the edge's
//! observations, in the time the observations carry.
//!
//! [`Detector::observe`] takes one [`Observation`] and returns what it
//! completes; [`Detector::tick`] judges what only the passing of time
//! reveals (a session that stays silent). Neither reads a clock, so a
//! simulated ward can be replayed in simulated time. Per device it keeps:
//!
//! - **message rate**: an [`Ewma`] of the inter-arrival time of PUBLISHes
//!   (the device's own normal), and the last `rate_window` arrivals; a recent
//!   rate `flood_factor` times the baseline (and above `flood_min_rate`), or
//!   above `flood_absolute_rate` before the baseline is warm, is a flood;
//! - **payload size**: an [`Ewma`] of sizes; far above the band is anomalous;
//! - **connection frequency**: session openings within `churn_window`;
//! - **sessions**: open sessions by peer, for duplicate sessions and silent
//!   sessions (a session opened and nothing published since). A session
//!   opened while another one of the device, from another address, is open
//!   and the device published within `duplicate_recent` is an *overlap*.
//!   One overlap is what a quick reconnect over a half-open connection
//!   looks like; a second one within `churn_window` is two places taking the
//!   identity from each other: a stolen certificate used twice;
//! - **vitals**: [`VitalTrack`] for implausible changes and flat signals.
//!
//! Policy violations reported by the edge become alerts at once, except
//! `not_stored` (the gateway's own storage refusing, not the device's
//! fault) and `quarantined` (a device already confined by a response or an
//! operator doing what it did before: the edge refuses and audits it, and
//! its reconnect loop is not counted as churn until it sends accepted
//! telemetry again); refused connections are counted per device, or per
//! peer address when no identity is known, within `auth_window`. One alert
//! per subject and kind per `cooldown`; repeats in between only bump a count.
//! All maps are bounded by `max_tracked`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use serde_json::json;
use wardgate_protocol::{DeviceId, Reading, TopicKind};

use super::alert::{AlertKind, Finding};
use super::baseline::Ewma;
use super::physiology::{Implausible, VitalTrack};
use super::signal::{Observation, Signal};
use crate::config::AnomalyConfig;

/// Smoothing of the per-device baselines (about 40 samples of memory).
const ALPHA: f64 = 0.05;
/// Inter-arrival gaps longer than this many baseline means are pauses
/// (a reconnect, a device put aside), not part of the rate baseline.
const PAUSE_FACTOR: f64 = 10.0;
/// Least deviation assumed for payload sizes, bytes.
const SIZE_DEVIATION_FLOOR: f64 = 16.0;
/// Most open sessions kept per device (a connect flood is churn long before).
const MAX_SESSIONS_PER_DEVICE: usize = 16;

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    #[allow(clippy::cast_precision_loss)] // milliseconds between events
    let ms = (to - from).num_milliseconds() as f64;
    ms / 1000.0
}

fn within(at: DateTime<Utc>, since: DateTime<Utc>, window: std::time::Duration) -> bool {
    chrono::Duration::from_std(window).is_ok_and(|w| at - since <= w)
}

/// One open session of a device.
#[derive(Debug, Clone)]
struct Session {
    opened: DateTime<Utc>,
    silent_reported: bool,
}

/// Everything kept about one device.
#[derive(Debug)]
struct DeviceTrack {
    interarrival: Ewma,
    last_publish: Option<DateTime<Utc>>,
    recent: VecDeque<DateTime<Utc>>,
    size: Ewma,
    connects: VecDeque<DateTime<Utc>>,
    sessions: HashMap<SocketAddr, Session>,
    overlaps: VecDeque<DateTime<Utc>>,
    vitals: VitalTrack,
    refusals: VecDeque<DateTime<Utc>>,
    /// Last time the edge refused it for being quarantined.
    confined_at: Option<DateTime<Utc>>,
}

impl DeviceTrack {
    fn new() -> Self {
        Self {
            interarrival: Ewma::new(ALPHA),
            last_publish: None,
            recent: VecDeque::new(),
            size: Ewma::new(ALPHA),
            connects: VecDeque::new(),
            sessions: HashMap::new(),
            overlaps: VecDeque::new(),
            vitals: VitalTrack::default(),
            refusals: VecDeque::new(),
            confined_at: None,
        }
    }
}

/// Keep `q` to the events within `window` of `at`, and at most `cap`.
fn push_window(
    q: &mut VecDeque<DateTime<Utc>>,
    at: DateTime<Utc>,
    window: std::time::Duration,
    cap: usize,
) {
    q.push_back(at);
    while q.front().is_some_and(|&t| !within(at, t, window)) || q.len() > cap {
        q.pop_front();
    }
}

/// The detector's state over all devices and peers.
#[derive(Debug)]
pub struct Detector {
    cfg: AnomalyConfig,
    devices: HashMap<DeviceId, DeviceTrack>,
    peers: HashMap<IpAddr, VecDeque<DateTime<Utc>>>,
    /// Last alert per (subject, kind), for the cooldown.
    raised: HashMap<(String, AlertKind), DateTime<Utc>>,
    /// Alerts not raised again because of the cooldown.
    suppressed: u64,
}

impl Detector {
    /// A detector with the `[anomaly]` thresholds.
    #[must_use]
    pub fn new(cfg: AnomalyConfig) -> Self {
        Self {
            cfg,
            devices: HashMap::new(),
            peers: HashMap::new(),
            raised: HashMap::new(),
            suppressed: 0,
        }
    }

    /// Findings not raised because an alert of the same subject and kind
    /// was raised within the cooldown.
    #[must_use]
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Judge one observation.
    pub fn observe(&mut self, obs: &Observation) -> Vec<Finding> {
        let mut out = Vec::new();
        let at = obs.at;
        match &obs.signal {
            Signal::SessionOpened { device } => self.opened(at, obs.peer, device, &mut out),
            Signal::SessionClosed { device, .. } => {
                if let (Some(t), Some(peer)) = (self.devices.get_mut(device), obs.peer) {
                    t.sessions.remove(&peer);
                }
            }
            Signal::Refused { device, reason } => {
                self.refused(at, obs.peer, device.as_ref(), reason, &mut out);
            }
            Signal::Publish {
                device,
                kind,
                size,
                readings,
            } => self.publish(at, device, *kind, *size, readings.as_deref(), &mut out),
            Signal::Violation {
                device,
                reason,
                detail,
            } => {
                if reason == "quarantined" {
                    if let Some(t) = self.track(device) {
                        t.confined_at = Some(at);
                    }
                } else if reason != "not_stored" {
                    out.push(finding(
                        at,
                        device,
                        AlertKind::PolicyViolation,
                        1.0,
                        json!({"reason": reason, "detail": detail, "peer": obs.peer.map(|p| p.to_string())}),
                    ));
                }
            }
        }
        self.gate(out)
    }

    /// Judge what the passing of time to `now` reveals: sessions that
    /// stayed open without publishing.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Finding> {
        let mut out = Vec::new();
        let floor = self.cfg.silent_after;
        let warm = u64::from(self.cfg.warmup_messages);
        for (device, t) in &mut self.devices {
            // Three of the device's own intervals, never below the floor.
            let own = if t.interarrival.count() >= warm {
                std::time::Duration::from_secs_f64((t.interarrival.mean() * 3.0).clamp(0.0, 3600.0))
            } else {
                floor
            };
            let limit = floor.max(own);
            let last_publish = t.last_publish;
            for (peer, s) in &mut t.sessions {
                let published_since = last_publish.is_some_and(|lp| lp >= s.opened);
                if !published_since && !s.silent_reported && !within(now, s.opened, limit) {
                    s.silent_reported = true;
                    out.push(finding(
                        now,
                        device,
                        AlertKind::SilentSession,
                        secs(s.opened, now) / limit.as_secs_f64().max(0.001),
                        json!({
                            "peer": peer.to_string(),
                            "open_seconds": secs(s.opened, now),
                            "limit_seconds": limit.as_secs_f64(),
                        }),
                    ));
                }
            }
        }
        self.gate(out)
    }

    fn track(&mut self, device: &DeviceId) -> Option<&mut DeviceTrack> {
        if !self.devices.contains_key(device) && self.devices.len() >= self.cfg.max_tracked {
            return None;
        }
        Some(
            self.devices
                .entry(device.clone())
                .or_insert_with(DeviceTrack::new),
        )
    }

    fn opened(
        &mut self,
        at: DateTime<Utc>,
        peer: Option<SocketAddr>,
        device: &DeviceId,
        out: &mut Vec<Finding>,
    ) {
        let cfg = self.cfg.clone();
        let Some(t) = self.track(device) else { return };
        let Some(peer) = peer else { return };
        if t.confined_at
            .is_some_and(|c| within(at, c, cfg.churn_window))
        {
            // A confined device reconnecting after each refusal.
            t.sessions.insert(
                peer,
                Session {
                    opened: at,
                    silent_reported: true,
                },
            );
            return;
        }
        push_window(
            &mut t.connects,
            at,
            cfg.churn_window,
            cfg.churn_connects * 4,
        );
        if t.connects.len() >= cfg.churn_connects {
            #[allow(clippy::cast_precision_loss)] // small counts
            let score = t.connects.len() as f64 / cfg.churn_connects as f64;
            out.push(finding(
                at,
                device,
                AlertKind::ConnectionChurn,
                score,
                json!({
                    "sessions": t.connects.len(),
                    "window_seconds": cfg.churn_window.as_secs_f64(),
                    "threshold": cfg.churn_connects,
                }),
            ));
        }
        // Another place still publishing under this identity? The device
        // published just now, and not in this session (it only opens now).
        let publishing = t
            .last_publish
            .is_some_and(|lp| within(at, lp, cfg.duplicate_recent));
        let live_elsewhere: Vec<String> = t
            .sessions
            .iter()
            .filter(|(p, s)| publishing && **p != peer && s.opened <= at)
            .map(|(p, _)| p.to_string())
            .collect();
        if !live_elsewhere.is_empty() {
            push_window(&mut t.overlaps, at, cfg.churn_window, 16);
            if t.overlaps.len() >= 2 {
                #[allow(clippy::cast_precision_loss)]
                let score = t.overlaps.len() as f64 / 2.0;
                out.push(finding(
                    at,
                    device,
                    AlertKind::DuplicateSession,
                    score,
                    json!({
                        "new_peer": peer.to_string(),
                        "live_peers": live_elsewhere,
                        "overlaps": t.overlaps.len(),
                        "window_seconds": cfg.churn_window.as_secs_f64(),
                    }),
                ));
            }
        }
        if t.sessions.len() >= MAX_SESSIONS_PER_DEVICE {
            // Forget the oldest session; churn has long been reported.
            if let Some(oldest) = t
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.opened)
                .map(|(p, _)| *p)
            {
                t.sessions.remove(&oldest);
            }
        }
        t.sessions.insert(
            peer,
            Session {
                opened: at,
                silent_reported: false,
            },
        );
    }

    fn refused(
        &mut self,
        at: DateTime<Utc>,
        peer: Option<SocketAddr>,
        device: Option<&DeviceId>,
        reason: &str,
        out: &mut Vec<Finding>,
    ) {
        let cfg = self.cfg.clone();
        let (q, subject_device) = match device {
            Some(d) => match self.track(d) {
                Some(t) => (&mut t.refusals, Some(d.clone())),
                None => return,
            },
            None => {
                let Some(peer) = peer else { return };
                if !self.peers.contains_key(&peer.ip()) && self.peers.len() >= cfg.max_tracked {
                    // Forget peers with nothing recent before refusing to track.
                    self.peers
                        .retain(|_, q| q.back().is_some_and(|&t| within(at, t, cfg.auth_window)));
                    if self.peers.len() >= cfg.max_tracked {
                        return;
                    }
                }
                (self.peers.entry(peer.ip()).or_default(), None)
            }
        };
        push_window(q, at, cfg.auth_window, cfg.auth_failures * 4);
        if q.len() >= cfg.auth_failures {
            #[allow(clippy::cast_precision_loss)]
            let score = q.len() as f64 / cfg.auth_failures as f64;
            let evidence = json!({
                "refusals": q.len(),
                "window_seconds": cfg.auth_window.as_secs_f64(),
                "last_reason": reason,
                "peer": peer.map(|p| p.to_string()),
            });
            out.push(match subject_device {
                Some(d) => finding(at, &d, AlertKind::AuthFailure, score, evidence),
                None => Finding {
                    at,
                    device: None,
                    subject: peer
                        .map_or_else(|| "peer:unknown".to_owned(), |p| format!("peer:{}", p.ip())),
                    kind: AlertKind::AuthFailure,
                    score,
                    evidence,
                },
            });
        }
    }

    fn publish(
        &mut self,
        at: DateTime<Utc>,
        device: &DeviceId,
        kind: TopicKind,
        size: usize,
        readings: Option<&[Reading]>,
        out: &mut Vec<Finding>,
    ) {
        let cfg = self.cfg.clone();
        let Some(t) = self.track(device) else { return };
        let warm = t.interarrival.count() >= u64::from(cfg.warmup_messages);
        if kind == TopicKind::Telemetry {
            t.confined_at = None;
        }
        // Message rate over the last `rate_window` arrivals.
        t.recent.push_back(at);
        while t.recent.len() > cfg.rate_window {
            t.recent.pop_front();
        }
        let mut flooding = false;
        if t.recent.len() == cfg.rate_window {
            if let Some(&first) = t.recent.front() {
                let span = secs(first, at).max(0.001);
                #[allow(clippy::cast_precision_loss)]
                let recent_rate = (cfg.rate_window - 1) as f64 / span;
                let baseline_rate = if warm && t.interarrival.mean() > 0.0 {
                    Some(1.0 / t.interarrival.mean())
                } else {
                    None
                };
                flooding = match baseline_rate {
                    Some(b) => {
                        recent_rate > cfg.flood_factor * b && recent_rate > cfg.flood_min_rate
                    }
                    None => recent_rate > cfg.flood_absolute_rate,
                };
                if flooding {
                    let score = baseline_rate.map_or(recent_rate / cfg.flood_absolute_rate, |b| {
                        recent_rate / (cfg.flood_factor * b)
                    });
                    out.push(finding(
                        at,
                        device,
                        AlertKind::MessageFlood,
                        score.max(1.0),
                        json!({
                            "recent_per_second": recent_rate,
                            "baseline_per_second": baseline_rate,
                            "window_messages": cfg.rate_window,
                        }),
                    ));
                }
            }
        }
        if let Some(last) = t.last_publish {
            let gap = secs(last, at).max(0.0);
            let pause = warm && gap > PAUSE_FACTOR * t.interarrival.mean();
            if !flooding && !pause {
                t.interarrival.update(gap);
            }
        }
        t.last_publish = Some(at);
        // Payload size (telemetry only: status and reports differ by kind).
        if kind == TopicKind::Telemetry {
            #[allow(clippy::cast_precision_loss)]
            let x = size as f64;
            let big = t.size.count() >= u64::from(cfg.warmup_messages)
                && t.size.score_above(x, SIZE_DEVIATION_FLOOR) > cfg.size_band
                && x - t.size.mean() > cfg.size_min_excess as f64;
            if big {
                out.push(finding(
                    at,
                    device,
                    AlertKind::PayloadSize,
                    t.size.score_above(x, SIZE_DEVIATION_FLOOR) / cfg.size_band,
                    json!({"bytes": size, "baseline_bytes": t.size.mean(), "deviation": t.size.deviation()}),
                ));
            } else {
                t.size.update(x);
            }
        }
        if let Some(readings) = readings {
            for f in t.vitals.observe(at, readings, cfg.flat_samples) {
                out.push(match f {
                    Implausible::Change {
                        kind,
                        from,
                        to,
                        seconds,
                        allowed,
                    } => finding(
                        at,
                        device,
                        AlertKind::ImplausibleChange,
                        (to - from).abs() / allowed.max(f64::EPSILON),
                        json!({"vital": kind, "from": from, "to": to, "seconds": seconds, "allowed_change": allowed}),
                    ),
                    Implausible::Flat { samples, kinds } => finding(
                        at,
                        device,
                        AlertKind::FlatSignal,
                        f64::from(samples) / f64::from(cfg.flat_samples.max(1)),
                        json!({"messages_unchanged": samples, "vitals": kinds}),
                    ),
                });
            }
        }
    }

    /// Apply the cooldown: one alert per subject and kind per `cooldown`.
    fn gate(&mut self, found: Vec<Finding>) -> Vec<Finding> {
        let cooldown = self.cfg.cooldown;
        let mut out = Vec::with_capacity(found.len());
        for f in found {
            let key = (f.subject.clone(), f.kind);
            if self
                .raised
                .get(&key)
                .is_some_and(|&last| within(f.at, last, cooldown))
            {
                self.suppressed += 1;
                continue;
            }
            if self.raised.len() >= self.cfg.max_tracked {
                let at = f.at;
                self.raised.retain(|_, last| within(at, *last, cooldown));
            }
            self.raised.insert(key, f.at);
            out.push(f);
        }
        out
    }
}

fn finding(
    at: DateTime<Utc>,
    device: &DeviceId,
    kind: AlertKind,
    score: f64,
    evidence: serde_json::Value,
) -> Finding {
    Finding {
        at,
        device: Some(device.clone()),
        subject: format!("device:{device}"),
        kind,
        score,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use wardgate_protocol::VitalKind;

    use super::*;
    use crate::testing::id as dev;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 7], port))
    }

    fn obs(at: DateTime<Utc>, port: u16, signal: Signal) -> Observation {
        Observation {
            at,
            peer: Some(peer(port)),
            signal,
        }
    }

    fn telemetry(d: &DeviceId, hr: f64, spo2: f64) -> Signal {
        Signal::Publish {
            device: d.clone(),
            kind: TopicKind::Telemetry,
            size: 300,
            readings: Some(vec![
                Reading {
                    kind: VitalKind::HeartRate,
                    value: hr,
                },
                Reading {
                    kind: VitalKind::Spo2,
                    value: spo2,
                },
            ]),
        }
    }

    /// A device that connected at t0 and sent `n` messages a second apart.
    fn warmed(det: &mut Detector, d: &DeviceId, t0: DateTime<Utc>, n: i64) -> Vec<Finding> {
        let mut all = det.observe(&obs(t0, 1, Signal::SessionOpened { device: d.clone() }));
        for i in 0..n {
            let hr = 70.0 + (i % 3) as f64;
            let spo2 = 96.0 + (i % 2) as f64;
            all.extend(det.observe(&obs(t0 + Duration::seconds(i), 1, telemetry(d, hr, spo2))));
        }
        all
    }

    /// A detector with the default settings that has seen `device` stream
    /// normally for 30 s from the returned instant.
    fn warmed_detector(device: &str) -> (Detector, DeviceId, DateTime<Utc>) {
        let mut det = Detector::new(AnomalyConfig::default());
        let d = dev(device);
        let t0 = Utc::now();
        warmed(&mut det, &d, t0, 30);
        (det, d, t0)
    }

    #[test]
    fn a_steady_device_raises_nothing_and_a_flood_is_caught_fast() {
        let mut det = Detector::new(AnomalyConfig::default());
        let d = dev("monitor-01");
        let t0 = Utc::now();
        assert!(warmed(&mut det, &d, t0, 60).is_empty());
        let start = t0 + Duration::seconds(60);
        let mut caught = None;
        for i in 0..400 {
            let at = start + Duration::milliseconds(i * 25); // 40 msg/s
            let f = det.observe(&obs(
                at,
                1,
                telemetry(&d, 70.0 + (i % 3) as f64, 97.0 - (i % 2) as f64),
            ));
            if f.iter().any(|f| f.kind == AlertKind::MessageFlood) {
                caught = Some(at - start);
                break;
            }
        }
        let caught = caught.expect("flood detected");
        assert!(caught < Duration::seconds(2), "{caught}");
    }

    #[test]
    fn a_second_place_publishing_under_one_identity_is_a_duplicate() {
        let (mut det, d, t0) = warmed_detector("pump-03");
        // The thief connects while the device streams: one overlap, as a
        // quick reconnect would be.
        let t1 = t0 + Duration::milliseconds(29_500);
        let f = det.observe(&obs(t1, 2, Signal::SessionOpened { device: d.clone() }));
        assert!(f.is_empty(), "{f:?}");
        // The identity is taken over; the device comes back while the thief
        // still holds a session: a second overlap.
        det.observe(&obs(
            t1,
            1,
            Signal::SessionClosed {
                device: d.clone(),
                reason: "broker connection lost".into(),
            },
        ));
        let f = det.observe(&obs(
            t1 + Duration::seconds(1),
            3,
            Signal::SessionOpened { device: d.clone() },
        ));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, AlertKind::DuplicateSession);
        // A reconnect after the old session went quiet is not.
        let mut det = Detector::new(AnomalyConfig::default());
        warmed(&mut det, &d, t0, 30);
        let f = det.observe(&obs(
            t0 + Duration::seconds(60),
            2,
            Signal::SessionOpened { device: d.clone() },
        ));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn silent_sessions_churn_and_refusals() {
        let mut det = Detector::new(AnomalyConfig::default());
        let d = dev("vent-02");
        let t0 = Utc::now();
        det.observe(&obs(t0, 5, Signal::SessionOpened { device: d.clone() }));
        assert!(det.tick(t0 + Duration::seconds(5)).is_empty());
        let f = det.tick(t0 + Duration::seconds(7));
        assert_eq!(f[0].kind, AlertKind::SilentSession);
        assert!(
            det.tick(t0 + Duration::seconds(8)).is_empty(),
            "reported once"
        );

        let mut kinds = Vec::new();
        for i in 0..5 {
            kinds.extend(
                det.observe(&obs(
                    t0 + Duration::seconds(10 + i),
                    100 + i as u16,
                    Signal::SessionOpened { device: d.clone() },
                ))
                .into_iter()
                .map(|f| f.kind),
            );
        }
        assert!(kinds.contains(&AlertKind::ConnectionChurn), "{kinds:?}");

        let mut f = Vec::new();
        for i in 0..3 {
            f.extend(det.observe(&obs(
                t0 + Duration::seconds(i),
                200,
                Signal::Refused {
                    device: None,
                    reason: "tls_handshake".into(),
                },
            )));
        }
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].subject, "peer:10.0.0.7");
    }

    #[test]
    fn violations_alert_once_per_cooldown_except_storage() {
        let mut det = Detector::new(AnomalyConfig::default());
        let d = dev("monitor-09");
        let t0 = Utc::now();
        let v = |reason: &str| Signal::Violation {
            device: d.clone(),
            reason: reason.into(),
            detail: "x".into(),
        };
        assert!(det.observe(&obs(t0, 1, v("not_stored"))).is_empty());
        assert_eq!(det.observe(&obs(t0, 1, v("acl_topic"))).len(), 1);
        assert!(det
            .observe(&obs(t0 + Duration::seconds(5), 1, v("acl_topic")))
            .is_empty());
        assert_eq!(det.suppressed(), 1);
        assert_eq!(
            det.observe(&obs(t0 + Duration::seconds(61), 1, v("replay")))
                .len(),
            1
        );
    }

    #[test]
    fn impossible_jumps_and_frozen_values() {
        let (mut det, d, t0) = warmed_detector("monitor-04");
        let f = det.observe(&obs(
            t0 + Duration::seconds(30),
            1,
            telemetry(&d, 190.0, 97.0),
        ));
        assert_eq!(f[0].kind, AlertKind::ImplausibleChange, "{f:?}");
        let mut flat = None;
        for i in 31..45 {
            let f = det.observe(&obs(
                t0 + Duration::seconds(i),
                1,
                telemetry(&d, 72.0, 95.0),
            ));
            if f.iter().any(|f| f.kind == AlertKind::FlatSignal) {
                flat = Some(i);
                break;
            }
        }
        assert!(flat.is_some_and(|i| i <= 40), "{flat:?}");
    }
}
