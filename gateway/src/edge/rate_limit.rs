//! Per-device publish rate limit: a token bucket per device.
//!
//! Each device has one [`TokenBucket`] of `edge.rate_burst` tokens refilled
//! at `edge.rate_per_second`; every PUBLISH takes one before anything else
//! is done with it, and a PUBLISH that finds the bucket empty is a
//! [`crate::edge::violation::Violation::RateLimited`], which ends the
//! session.
//!
//! The buckets live in [`DeviceBuckets`], beside the edge's other state
//! across sessions, not in the session: a device cut off for flooding that
//! reconnects at once finds its bucket as empty as it left it, instead of a
//! fresh burst per connection. That is what keeps one flooding device to its
//! share of the sink and the outbox, whoever else is streaming (fairness).
//! Two sessions of one device at once share one bucket too.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use wardgate_protocol::DeviceId;

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    #[must_use]
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        Self {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Take one token at `now`, if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The token buckets of every device that has published, shared by all
/// sessions of the edge. One entry per admitted device, so the map is
/// bounded by the registry (only enrolled devices get past admission).
#[derive(Debug)]
pub struct DeviceBuckets {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<DeviceId, TokenBucket>>,
}

impl DeviceBuckets {
    /// Buckets of `burst` tokens refilled at `rate` per second.
    #[must_use]
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token from `device`'s bucket at `now` (a device seen for
    /// the first time starts with a full bucket).
    pub fn try_take(&self, device: &DeviceId, now: Instant) -> bool {
        // A panic elsewhere while holding the lock leaves plain numbers
        // behind: still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = buckets.get_mut(device) {
            return b.try_take(now);
        }
        let mut b = TokenBucket::new(self.rate, self.burst, now);
        let took = b.try_take(now);
        buckets.insert(device.clone(), b);
        took
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_device_keeps_its_bucket_across_sessions_and_others_keep_theirs() {
        let start = Instant::now();
        let buckets = DeviceBuckets::new(10.0, 3);
        let flooder = DeviceId::parse("pump-01").unwrap();
        let bystander = DeviceId::parse("monitor-01").unwrap();
        for _ in 0..3 {
            assert!(buckets.try_take(&flooder, start));
        }
        // Cut off; a new session at once finds the bucket still empty.
        assert!(!buckets.try_take(&flooder, start + Duration::from_millis(1)));
        // Nobody else pays for it.
        for _ in 0..3 {
            assert!(buckets.try_take(&bystander, start));
        }
        // The flooder's bucket refills at the rate, not per connection.
        assert!(buckets.try_take(&flooder, start + Duration::from_millis(150)));
        assert!(!buckets.try_take(&flooder, start + Duration::from_millis(151)));
    }

    #[test]
    fn bucket_allows_the_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, start);
        assert!(b.try_take(start) && b.try_take(start) && b.try_take(start));
        assert!(!b.try_take(start));
        assert!(b.try_take(start + Duration::from_millis(150)));
    }
}
