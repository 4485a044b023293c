//! Token buckets: one, and one per key (a device, a peer address).
//!
//! A leaf module: the edge's per-device publish limit
//! ([`crate::edge::rate_limit`]) keeps one per device; [`KeyedBuckets::bounded`]
//! bounds the keys for limits keyed by something a peer chooses (its address).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use std::hash::Hash;
use std::time::Duration;

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
        self.take_or_wait(now).is_ok()
    }

    /// Take a token, or say how long until the next one.
    ///
    /// # Errors
    /// The wait, when the bucket is empty.
    pub fn take_or_wait(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(Duration::from_secs_f64(
                missing / self.rate.max(f64::MIN_POSITIVE),
            ))
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Whether it would be full at `now` (its key is owed nothing).
    #[must_use]
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

/// The token buckets of every device that has published, shared by all
/// sessions of the edge. One entry per admitted device, so the map is
/// bounded by the registry (only enrolled devices get past admission).
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    rate: f64,
    burst: u32,
    max_keys: usize,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    /// Buckets of `burst` tokens refilled at `rate` per second.
    #[must_use]
    pub fn new(rate: f64, burst: u32) -> Self {
        Self::bounded(rate, burst, usize::MAX)
    }

    /// As [`KeyedBuckets::new`], keeping at most `max_keys` buckets: when
    /// a new key would exceed it, the buckets that have refilled (whose
    /// keys are owed nothing) are dropped first, and if none has, the new
    /// key is refused until one does. So a flood of new keys (addresses)
    /// costs bounded memory and is itself limited.
    #[must_use]
    pub fn bounded(rate: f64, burst: u32, max_keys: usize) -> Self {
        Self {
            rate,
            burst,
            max_keys,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token from `device`'s bucket at `now` (a device seen for
    /// the first time starts with a full bucket).
    pub fn try_take(&self, key: &K, now: Instant) -> bool {
        self.take_or_wait(key, now).is_ok()
    }

    /// Take a token for `key`, or say how long until one is there.
    ///
    /// # Errors
    /// The wait, when the bucket is empty (or no bucket can be kept).
    pub fn take_or_wait(&self, key: &K, now: Instant) -> Result<(), Duration> {
        // A panic elsewhere while holding the lock leaves plain numbers
        // behind: still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = buckets.get_mut(key) {
            return b.take_or_wait(now);
        }
        if buckets.len() >= self.max_keys {
            buckets.retain(|_, b| !b.is_full(now));
            if buckets.len() >= self.max_keys {
                return Err(Duration::from_secs_f64(
                    1.0 / self.rate.max(f64::MIN_POSITIVE),
                ));
            }
        }
        let mut b = TokenBucket::new(self.rate, self.burst, now);
        let took = b.take_or_wait(now);
        buckets.insert(key.clone(), b);
        took
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wardgate_protocol::DeviceId;

    #[test]
    fn a_device_keeps_its_bucket_across_sessions_and_others_keep_theirs() {
        let start = Instant::now();
        let buckets: KeyedBuckets<DeviceId> = KeyedBuckets::new(10.0, 3);
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

    #[test]
    fn an_empty_bucket_says_how_long_to_wait() {
        let start = Instant::now();
        let mut b = TokenBucket::new(2.0, 1, start);
        assert_eq!(b.take_or_wait(start), Ok(()));
        let wait = b.take_or_wait(start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn a_bounded_set_drops_refilled_buckets_and_refuses_when_all_are_owed() {
        let start = Instant::now();
        let buckets: KeyedBuckets<u32> = KeyedBuckets::bounded(1.0, 1, 2);
        assert!(buckets.try_take(&1, start));
        assert!(buckets.try_take(&2, start));
        // Both owe a token: a third key is refused, not tracked.
        assert!(buckets.take_or_wait(&3, start).is_err());
        // A second later both have refilled; the third key takes a place.
        assert!(buckets.try_take(&3, start + Duration::from_secs(1)));
    }
}
