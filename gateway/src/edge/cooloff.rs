//! Cool-off after a flood: a device cut off for exceeding its publish rate
//! stays off for a while.
//!
//! Without it a flooding device that reconnects at once costs the gateway a
//! TLS handshake, an admission, a broker link and three audit and registry
//! writes per cycle, many times a second: database writes the other
//! devices' telemetry commits then queue behind. After a rate-limit
//! violation the device's connections are held idle right after the TLS
//! handshake (before any MQTT, registry or audit work) and closed when the
//! penalty is over (held at most [`MAX_HOLD`]), for a penalty that
//! doubles with each strike, from [`FIRST_PENALTY`] up to [`MAX_PENALTY`];
//! strikes are forgotten after [`FORGET_AFTER`] without one. Each refusal is
//! counted (`wardgate_edge_connections_total{outcome="cooling_off"}`), not
//! audited row by row: the violation that started the cool-off is audited
//! once, with its penalty. A device within its rate never gets here, and
//! other devices are never affected: the state is per device.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use wardgate_protocol::DeviceId;

/// Penalty after the first strike.
pub const FIRST_PENALTY: Duration = Duration::from_secs(1);
/// Longest penalty.
pub const MAX_PENALTY: Duration = Duration::from_secs(60);
/// Longest a connection of a device cooling off is held before it is
/// closed.
pub const MAX_HOLD: Duration = Duration::from_secs(10);
/// Strikes are forgotten after this long without a new one.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Strikes {
    count: u32,
    last: Instant,
    until: Instant,
}

/// Cool-off state per device that has been cut off for its rate; bounded by
/// the registry, as only admitted devices can strike.
#[derive(Debug, Default)]
pub struct Cooloff {
    devices: Mutex<HashMap<DeviceId, Strikes>>,
}

impl Cooloff {
    /// Record a rate-limit violation of `device` at `now`; the penalty it
    /// now serves.
    pub fn strike(&self, device: &DeviceId, now: Instant) -> Duration {
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let count = match devices.get(device) {
            Some(s) if now.saturating_duration_since(s.last) < FORGET_AFTER => s.count + 1,
            _ => 1,
        };
        let penalty = FIRST_PENALTY
            .saturating_mul(1 << (count - 1).min(16))
            .min(MAX_PENALTY);
        devices.insert(
            device.clone(),
            Strikes {
                count,
                last: now,
                until: now + penalty,
            },
        );
        // Forget what is long over, so the map holds only recent strikers.
        if devices.len() > 1024 {
            devices.retain(|_, s| now.saturating_duration_since(s.last) < FORGET_AFTER);
        }
        penalty
    }

    /// How long `device` must still stay off at `now`, if it must.
    pub fn remaining(&self, device: &DeviceId, now: Instant) -> Option<Duration> {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let s = devices.get(device)?;
        (now < s.until).then(|| s.until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_double_per_strike_up_to_the_cap_and_are_forgotten() {
        let c = Cooloff::default();
        let flooder = DeviceId::parse("pump-01").unwrap();
        let other = DeviceId::parse("pump-02").unwrap();
        let t0 = Instant::now();
        assert_eq!(c.remaining(&flooder, t0), None);
        assert_eq!(c.strike(&flooder, t0), FIRST_PENALTY);
        assert!(c
            .remaining(&flooder, t0 + Duration::from_millis(500))
            .is_some());
        assert_eq!(c.remaining(&flooder, t0 + FIRST_PENALTY), None);
        assert_eq!(c.remaining(&other, t0), None, "per device");
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(c.strike(&flooder, t1), 2 * FIRST_PENALTY);
        let mut t = t1;
        for _ in 0..10 {
            t += Duration::from_secs(1);
            c.strike(&flooder, t);
        }
        assert_eq!(c.strike(&flooder, t), MAX_PENALTY);
        // Quiet for long enough: back to the first penalty.
        assert_eq!(c.strike(&flooder, t + FORGET_AFTER), FIRST_PENALTY);
    }
}
