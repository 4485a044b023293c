//! One simulated patient's vital signs over time: bounded, mean-reverting
//! random walks with measurement noise, and real clinical events.
//!
//! Each vital follows an Ornstein-Uhlenbeck walk around the patient's own
//! baseline (so it drifts slowly and stays bounded), plus Gaussian
//! measurement noise and the rounding a monitor displays. Clinical events
//! ([`ClinicalEvent`]: a desaturation, a tachycardia episode) move values
//! the way bodies do, over tens of seconds. They are part of clean data:
//! the gateway must not take them for attacks. Values are always inside
//! the protocol's physiological ranges.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use wardgate_protocol::{Reading, VitalKind};

/// A real clinical episode (not an attack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClinicalEvent {
    /// SpO2 falls by about 12 points over a minute, stays down a minute,
    /// recovers over a minute (with a compensating rise in heart rate).
    Desaturation,
    /// Heart rate rises by about 55 bpm over 40 s, stays up two minutes,
    /// recovers over a minute.
    Tachycardia,
}

impl ClinicalEvent {
    /// How long the episode lasts.
    #[must_use]
    pub fn duration(self) -> Duration {
        Duration::from_secs(180)
    }

    /// `(heart rate, SpO2)` offsets `t` into the episode.
    fn offsets(self, t: f64) -> (f64, f64) {
        // Ramp up over `up` s, hold until `hold_end`, ramp down to `end`.
        let shape = |up: f64, hold_end: f64, end: f64| {
            if t < 0.0 || t >= end {
                0.0
            } else if t < up {
                t / up
            } else if t < hold_end {
                1.0
            } else {
                1.0 - (t - hold_end) / (end - hold_end)
            }
        };
        match self {
            ClinicalEvent::Desaturation => {
                let s = shape(60.0, 120.0, 180.0);
                (15.0 * s, -12.0 * s)
            }
            ClinicalEvent::Tachycardia => (55.0 * shape(40.0, 160.0, 220.0), 0.0),
        }
    }
}

/// What a device of a kind measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measures {
    /// HR, SpO2, RR, temperature, systolic and diastolic pressure.
    Monitor,
    /// SpO2 and pulse rate.
    Oximeter,
    /// Respiratory rate and SpO2.
    Ventilator,
    /// Delivery rate, set by staff in steps.
    Pump,
}

/// One vital's walk: baseline, current deviation, reversion, volatility,
/// measurement noise and display precision.
#[derive(Debug, Clone)]
struct Walk {
    kind: VitalKind,
    baseline: f64,
    deviation: f64,
    /// Reversion per second.
    theta: f64,
    /// Volatility per sqrt(second).
    sigma: f64,
    noise: f64,
    precision: f64,
}

/// A standard normal sample (Box-Muller).
fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A simulated patient (or pump) whose readings are sampled in time order.
#[derive(Debug)]
pub struct Patient {
    rng: StdRng,
    measures: Measures,
    walks: Vec<Walk>,
    last: Option<Duration>,
    events: Vec<(Duration, ClinicalEvent)>,
    pump_rate: f64,
    next_titration: Duration,
}

impl Patient {
    /// A patient seeded from `seed` (reproducible), measured as `measures`.
    #[must_use]
    pub fn new(seed: u64, measures: Measures) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut walk = |kind, lo: f64, hi: f64, theta, sigma, noise, precision| Walk {
            kind,
            baseline: rng.gen_range(lo..hi),
            deviation: 0.0,
            theta,
            sigma,
            noise,
            precision,
        };
        let hr = walk(VitalKind::HeartRate, 62.0, 95.0, 0.01, 0.6, 1.5, 1.0);
        let spo2 = walk(VitalKind::Spo2, 94.0, 98.0, 0.02, 0.2, 0.6, 1.0);
        let rr = walk(VitalKind::RespiratoryRate, 12.0, 20.0, 0.02, 0.3, 1.0, 1.0);
        let temp = walk(VitalKind::Temperature, 36.4, 37.4, 0.002, 0.005, 0.05, 10.0);
        let sys = walk(VitalKind::SystolicBp, 105.0, 140.0, 0.01, 0.8, 2.0, 1.0);
        let dia = walk(VitalKind::DiastolicBp, 62.0, 88.0, 0.01, 0.6, 1.5, 1.0);
        let walks = match measures {
            Measures::Monitor => vec![hr, spo2, rr, temp, sys, dia],
            Measures::Oximeter => vec![spo2, hr],
            Measures::Ventilator => vec![rr, spo2],
            Measures::Pump => Vec::new(),
        };
        let pump_rate = f64::from(rng.gen_range(2..30u32)) * 5.0;
        Self {
            rng,
            measures,
            walks,
            last: None,
            events: Vec::new(),
            pump_rate,
            next_titration: Duration::from_secs(600),
        }
    }

    /// Schedule a clinical event starting at `at`.
    pub fn schedule(&mut self, at: Duration, event: ClinicalEvent) {
        self.events.push((at, event));
    }

    /// The readings at `at` (calls must come in non-decreasing time).
    pub fn sample(&mut self, at: Duration) -> Vec<Reading> {
        let dt = self
            .last
            .map_or(1.0, |l| at.saturating_sub(l).as_secs_f64())
            .min(600.0);
        self.last = Some(at);
        if self.measures == Measures::Pump {
            if at >= self.next_titration {
                // A nurse titrates the infusion: a step, legitimately sudden.
                let step = f64::from(self.rng.gen_range(1..4u32)) * 5.0;
                let up = self.rng.gen_bool(0.5);
                self.pump_rate = (self.pump_rate + if up { step } else { -step }).clamp(5.0, 500.0);
                let wait = self.rng.gen_range(300..1800);
                self.next_titration = at + Duration::from_secs(wait);
            }
            return vec![Reading {
                kind: VitalKind::InfusionRate,
                value: self.pump_rate,
            }];
        }
        let (mut hr_off, mut spo2_off) = (0.0, 0.0);
        for (start, ev) in &self.events {
            if at >= *start {
                let (h, s) = ev.offsets((at - *start).as_secs_f64());
                hr_off += h;
                spo2_off += s;
            }
        }
        let mut out = Vec::with_capacity(self.walks.len());
        for w in &mut self.walks {
            // Exact OU step over dt.
            let decay = (-w.theta * dt).exp();
            let spread = w.sigma * ((1.0 - decay * decay) / (2.0 * w.theta)).sqrt();
            w.deviation = w.deviation * decay + spread * gaussian(&mut self.rng);
            let offset = match w.kind {
                VitalKind::HeartRate => hr_off,
                VitalKind::Spo2 => spo2_off,
                _ => 0.0,
            };
            let measured = w.baseline + w.deviation + offset + w.noise * gaussian(&mut self.rng);
            let (lo, hi) = w.kind.range();
            let hi = if w.kind == VitalKind::Spo2 { 100.0 } else { hi };
            let value = ((measured * w.precision).round() / w.precision).clamp(lo, hi);
            out.push(Reading {
                kind: w.kind,
                value,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vitals_stay_in_range_and_move() {
        let mut p = Patient::new(3, Measures::Monitor);
        p.schedule(Duration::from_secs(100), ClinicalEvent::Desaturation);
        p.schedule(Duration::from_secs(400), ClinicalEvent::Tachycardia);
        let mut last: Option<Vec<Reading>> = None;
        let mut unchanged_runs = 0;
        let mut min_spo2 = 100.0f64;
        for s in 0..3600 {
            let r = p.sample(Duration::from_secs(s));
            for x in &r {
                x.kind.check(x.value).unwrap();
                if x.kind == VitalKind::Spo2 {
                    min_spo2 = min_spo2.min(x.value);
                }
            }
            if last.as_ref() == Some(&r) {
                unchanged_runs += 1;
            }
            last = Some(r);
        }
        assert!(unchanged_runs < 5, "{unchanged_runs}");
        assert!(min_spo2 < 90.0, "the desaturation shows: {min_spo2}");
    }

    #[test]
    fn pumps_hold_their_rate_between_titrations() {
        let mut p = Patient::new(1, Measures::Pump);
        let a = p.sample(Duration::from_secs(1));
        let b = p.sample(Duration::from_secs(2));
        assert_eq!(a, b);
    }
}
