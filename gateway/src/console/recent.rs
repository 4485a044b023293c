//! What the console shows live for each device and the registry does not
//! keep: its last few vital-sign readings and whether it is connected now.
//!
//! [`RecentActivity`] is fed by the edge: [`RecentActivity::record`] for
//! every telemetry message that passed policy (through
//! [`super::recording::RecordingSink`]) and [`RecentActivity::connected`]
//! for the life of each admitted session. It lives in memory only (a
//! restart starts the charts afresh; the outbox and upstream keep the
//! data) and is bounded twice: at most [`SAMPLES_PER_DEVICE`] readings per
//! device (the oldest is dropped) and at most [`MAX_DEVICES`] devices
//! (a reading from one more device evicts the device heard from least
//! recently that has no live session).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;
use wardgate_protocol::{DeviceId, Telemetry, VitalKind};

/// Readings kept per device (the chart's width).
pub const SAMPLES_PER_DEVICE: usize = 60;
/// Devices tracked at once (a ward has up to a few hundred).
pub const MAX_DEVICES: usize = 1024;

/// One telemetry message, reduced to what a chart needs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Sample {
    /// When the gateway accepted it.
    pub received_at: DateTime<Utc>,
    /// The device's time of measurement.
    pub ts: DateTime<Utc>,
    /// The device's sequence number.
    pub seq: u64,
    /// The values, by vital-sign name (`heart_rate`, `spo2`, ...).
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub values: Vec<(VitalKind, f64)>,
}

/// The live view of one device.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceActivity {
    /// Sessions open now (more than one means a duplicate identity).
    pub sessions: u32,
    /// When a session was last admitted.
    pub connected_at: Option<DateTime<Utc>>,
    /// When the last session ended.
    pub disconnected_at: Option<DateTime<Utc>>,
    /// When the last reading was accepted.
    pub last_reading_at: Option<DateTime<Utc>>,
    /// The newest readings, oldest first.
    pub samples: Vec<Sample>,
}

#[derive(Debug, Default)]
struct Entry {
    sessions: u32,
    connected_at: Option<DateTime<Utc>>,
    disconnected_at: Option<DateTime<Utc>>,
    samples: VecDeque<Sample>,
    /// Last time anything happened, for eviction.
    touched: Option<DateTime<Utc>>,
}

impl Entry {
    fn view(&self, last: usize) -> DeviceActivity {
        let skip = self.samples.len().saturating_sub(last);
        DeviceActivity {
            sessions: self.sessions,
            connected_at: self.connected_at,
            disconnected_at: self.disconnected_at,
            last_reading_at: self.samples.back().map(|s| s.received_at),
            samples: self.samples.iter().skip(skip).cloned().collect(),
        }
    }
}

/// Recent readings and live sessions per device (cheap to clone; shared).
#[derive(Debug, Clone, Default)]
pub struct RecentActivity {
    inner: Arc<Mutex<HashMap<DeviceId, Entry>>>,
}

/// Held for the life of one device session; dropping it marks the session
/// ended.
#[derive(Debug)]
#[must_use = "the session counts as connected only while the guard lives"]
pub struct SessionGuard {
    activity: RecentActivity,
    device: DeviceId,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut map = self.activity.lock();
        if let Some(e) = map.get_mut(&self.device) {
            e.sessions = e.sessions.saturating_sub(1);
            e.disconnected_at = Some(Utc::now());
            e.touched = e.disconnected_at;
        }
    }
}

impl RecentActivity {
    /// An empty view.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<DeviceId, Entry>> {
        // The map holds no invariant a panic elsewhere could break halfway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Make room for `device` if the map is full: evict the entry touched
    /// least recently among those without a live session.
    fn entry<'a>(
        map: &'a mut HashMap<DeviceId, Entry>,
        device: &DeviceId,
    ) -> Option<&'a mut Entry> {
        if !map.contains_key(device) && map.len() >= MAX_DEVICES {
            let victim = map
                .iter()
                .filter(|(_, e)| e.sessions == 0)
                .min_by_key(|(_, e)| e.touched)
                .map(|(id, _)| id.clone());
            match victim {
                Some(id) => {
                    map.remove(&id);
                }
                // Every tracked device is connected: keep those, track no more.
                None => return None,
            }
        }
        Some(map.entry(device.clone()).or_default())
    }

    /// Count a session of `device` as connected until the guard is dropped.
    pub fn connected(&self, device: &DeviceId) -> SessionGuard {
        let now = Utc::now();
        if let Some(e) = Self::entry(&mut self.lock(), device) {
            e.sessions = e.sessions.saturating_add(1);
            e.connected_at = Some(now);
            e.touched = Some(now);
        }
        SessionGuard {
            activity: self.clone(),
            device: device.clone(),
        }
    }

    /// Keep the readings of one accepted telemetry payload. A payload that
    /// does not parse (the edge has checked it already) is skipped.
    pub fn record(&self, device: &DeviceId, payload: &[u8], received_at: DateTime<Utc>) {
        let Ok(t) = Telemetry::from_json(payload) else {
            return;
        };
        let sample = Sample {
            received_at,
            ts: t.ts,
            seq: t.seq,
            values: t.readings.iter().map(|r| (r.kind, r.value)).collect(),
        };
        if let Some(e) = Self::entry(&mut self.lock(), device) {
            if e.samples.len() >= SAMPLES_PER_DEVICE {
                e.samples.pop_front();
            }
            e.samples.push_back(sample);
            e.touched = Some(received_at);
        }
    }

    /// Every tracked device with its newest `last` readings (at most
    /// [`SAMPLES_PER_DEVICE`]).
    #[must_use]
    pub fn snapshot(&self, last: usize) -> HashMap<DeviceId, DeviceActivity> {
        let last = last.min(SAMPLES_PER_DEVICE);
        self.lock()
            .iter()
            .map(|(id, e)| (id.clone(), e.view(last)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::id;

    fn payload(seq: u64, hr: f64) -> Vec<u8> {
        format!(
            r#"{{"schema":1,"seq":{seq},"ts":"2026-12-01T10:00:00Z","readings":[{{"kind":"heart_rate","value":{hr}}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn readings_are_bounded_per_device_oldest_dropped() {
        let r = RecentActivity::new();
        let d = id("mon-01");
        for seq in 1..=(SAMPLES_PER_DEVICE as u64 + 5) {
            r.record(&d, &payload(seq, 70.0), Utc::now());
        }
        let snap = r.snapshot(usize::MAX);
        let samples = &snap[&d].samples;
        assert_eq!(samples.len(), SAMPLES_PER_DEVICE);
        assert_eq!(samples[0].seq, 6, "the five oldest were dropped");
        assert_eq!(
            samples.last().map(|s| s.values.clone()),
            Some(vec![(VitalKind::HeartRate, 70.0)])
        );
        assert_eq!(r.snapshot(3)[&d].samples.len(), 3);
        assert_eq!(
            r.snapshot(3)[&d].samples[2].seq,
            SAMPLES_PER_DEVICE as u64 + 5
        );
    }

    #[test]
    fn unparsable_payloads_are_skipped() {
        let r = RecentActivity::new();
        r.record(&id("mon-01"), b"not json", Utc::now());
        assert!(r.snapshot(10).is_empty());
    }

    #[test]
    fn sessions_count_while_the_guard_lives() {
        let r = RecentActivity::new();
        let d = id("pump-01");
        let a = r.connected(&d);
        let b = r.connected(&d);
        assert_eq!(r.snapshot(1)[&d].sessions, 2);
        drop(a);
        assert_eq!(r.snapshot(1)[&d].sessions, 1);
        drop(b);
        let view = &r.snapshot(1)[&d];
        assert_eq!(view.sessions, 0);
        assert!(view.disconnected_at.is_some());
    }

    #[test]
    fn the_device_map_is_bounded_and_keeps_connected_devices() {
        let r = RecentActivity::new();
        let live = id("live-0");
        let _guard = r.connected(&live);
        for n in 0..MAX_DEVICES + 10 {
            r.record(&id(&format!("dev-{n}")), &payload(1, 60.0), Utc::now());
        }
        let snap = r.snapshot(1);
        assert_eq!(snap.len(), MAX_DEVICES);
        assert!(
            snap.contains_key(&live),
            "a connected device is never evicted"
        );
        assert!(snap.contains_key(&id(&format!("dev-{}", MAX_DEVICES + 9))));
    }
}
