//! Data-integrity checks on vital-sign streams: changes faster than a body
//! can change, and signals that stopped moving.
//!
//! These are not clinical alarms (the gateway does not decide about
//! patients): a real desaturation or tachycardia episode changes a value
//! by a few units per second at most, and a living patient's measured
//! values are never exactly constant for many samples. A jump of 100 bpm
//! between two readings a second apart, or every physiological value of a
//! monitor frozen, says the data is not coming from a patient: injection,
//! a replay of a recording, or a broken sensor path.
//!
//! Each kind has an allowance for measurement noise plus a largest
//! physiological rate of change ([`limit`]); a change beyond
//! `allowance + rate x dt` is implausible. Gaps longer than [`MAX_GAP_SECS`]
//! are not judged (anything may happen while a device is away). Infusion
//! rates are set by staff in steps and legitimately constant, so they take
//! part in neither check.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use wardgate_protocol::{Reading, VitalKind};

/// Longest gap between two readings that is still judged, in seconds.
pub const MAX_GAP_SECS: f64 = 120.0;

/// `(noise allowance, largest physiological change per second)` of a
/// kind, in its unit; `None` for kinds that are not physiological.
#[must_use]
pub fn limit(kind: VitalKind) -> Option<(f64, f64)> {
    match kind {
        VitalKind::HeartRate => Some((15.0, 5.0)),
        VitalKind::Spo2 => Some((6.0, 1.0)),
        VitalKind::RespiratoryRate => Some((10.0, 2.0)),
        VitalKind::Temperature => Some((0.8, 0.02)),
        VitalKind::SystolicBp => Some((30.0, 5.0)),
        VitalKind::DiastolicBp => Some((25.0, 4.0)),
        VitalKind::InfusionRate => None,
    }
}

/// A finding of the physiology checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Implausible {
    /// `kind` moved from `from` to `to` in `seconds`, beyond `allowed`.
    Change {
        /// Which vital.
        kind: VitalKind,
        /// Previous value.
        from: f64,
        /// New value.
        to: f64,
        /// Time between them.
        seconds: f64,
        /// The largest change accepted over that time.
        allowed: f64,
    },
    /// Every physiological value unchanged for `samples` messages.
    Flat {
        /// How many messages in a row.
        samples: u32,
        /// The kinds that stayed constant.
        kinds: Vec<VitalKind>,
    },
}

/// One device's last readings and its run of unchanged messages.
#[derive(Debug, Default, Clone)]
pub struct VitalTrack {
    last: HashMap<VitalKind, (f64, DateTime<Utc>)>,
    flat_run: u32,
}

impl VitalTrack {
    /// Judge one telemetry message at `at`; `flat_samples` is the run of
    /// unchanged messages that counts as flat.
    pub fn observe(
        &mut self,
        at: DateTime<Utc>,
        readings: &[Reading],
        flat_samples: u32,
    ) -> Vec<Implausible> {
        let mut found = Vec::new();
        let mut physiological = 0;
        let mut unchanged = 0;
        let mut flat_kinds = Vec::new();
        for r in readings {
            let Some((allowance, rate)) = limit(r.kind) else {
                self.last.insert(r.kind, (r.value, at));
                continue;
            };
            physiological += 1;
            if let Some(&(prev, prev_at)) = self.last.get(&r.kind) {
                #[allow(clippy::cast_precision_loss)] // milliseconds of a gap
                let seconds = ((at - prev_at).num_milliseconds() as f64 / 1000.0).max(0.0);
                if seconds <= MAX_GAP_SECS {
                    let allowed = allowance + rate * seconds;
                    if (r.value - prev).abs() > allowed {
                        found.push(Implausible::Change {
                            kind: r.kind,
                            from: prev,
                            to: r.value,
                            seconds,
                            allowed,
                        });
                    }
                }
                if r.value.to_bits() == prev.to_bits() {
                    unchanged += 1;
                    flat_kinds.push(r.kind);
                }
            }
            self.last.insert(r.kind, (r.value, at));
        }
        // Flat needs at least two physiological signals, all unchanged: one
        // slow signal alone (temperature to 0.1 degree) may rest a while.
        if physiological >= 2 && unchanged == physiological {
            self.flat_run = self.flat_run.saturating_add(1);
            if self.flat_run + 1 >= flat_samples {
                found.push(Implausible::Flat {
                    samples: self.flat_run + 1,
                    kinds: flat_kinds,
                });
            }
        } else {
            self.flat_run = 0;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn r(kind: VitalKind, value: f64) -> Reading {
        Reading { kind, value }
    }

    #[test]
    fn a_tachycardia_episode_is_plausible_a_jump_is_not() {
        let t0 = Utc::now();
        let mut v = VitalTrack::default();
        // 80 -> 150 bpm over 35 s, 2 bpm/s: a real episode.
        for i in 0..36 {
            let hr = 80.0 + 2.0 * f64::from(i);
            let f = v.observe(
                t0 + Duration::seconds(i64::from(i)),
                &[r(VitalKind::HeartRate, hr)],
                8,
            );
            assert!(f.is_empty(), "{i}: {f:?}");
        }
        let f = v.observe(
            t0 + Duration::seconds(36),
            &[r(VitalKind::HeartRate, 40.0)],
            8,
        );
        assert!(
            matches!(
                f[0],
                Implausible::Change {
                    kind: VitalKind::HeartRate,
                    ..
                }
            ),
            "{f:?}"
        );
    }

    #[test]
    fn frozen_monitor_values_are_flat_but_a_steady_pump_is_not() {
        let t0 = Utc::now();
        let mut monitor = VitalTrack::default();
        let mut pump = VitalTrack::default();
        let mut flat_at = None;
        for i in 0..10 {
            let at = t0 + Duration::seconds(i);
            let f = monitor.observe(
                at,
                &[r(VitalKind::HeartRate, 72.0), r(VitalKind::Spo2, 97.0)],
                8,
            );
            if flat_at.is_none() && f.iter().any(|x| matches!(x, Implausible::Flat { .. })) {
                flat_at = Some(i);
            }
            assert!(pump
                .observe(at, &[r(VitalKind::InfusionRate, 50.0)], 8)
                .is_empty());
        }
        assert_eq!(flat_at, Some(7), "the 8th identical message is flat");
    }
}
