//! Token buckets: one, one per key (a device, a peer address), and a
//! per-key request limit that says when to retry and when to tell the
//! operator.
//!
//! Shared pure logic, like [`crate::byte_range`]: the gateway's edge keeps
//! one bucket per device for its publish limit (`gateway::edge::rate_limit`);
//! the gateway's admin API and the OTA server limit requests per peer
//! address with a [`RequestLimit`], which is where `429 Too Many Requests`
//! and its `Retry-After` ([`retry_after_secs`]) come from. No I/O and no
//! clock of its own: every call takes `now`, so tests drive time.
//!
//! Keys a peer chooses (its address) are bounded
//! ([`KeyedBuckets::bounded`]): a flood of new addresses costs bounded
//! memory and is itself limited.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

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
            Err(secs_to_duration(missing / self.rate.max(f64::MIN_POSITIVE)))
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

/// A wait in seconds as a [`Duration`], saturating instead of panicking
/// on a rate so small that the wait does not fit.
fn secs_to_duration(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// One token bucket per key, behind one lock: the edge's buckets per
/// device (bounded by the registry: only enrolled devices get past
/// admission), or per peer address ([`KeyedBuckets::bounded`]).
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

    /// Take one token from `key`'s bucket at `now` (a key seen for the
    /// first time starts with a full bucket).
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
                return Err(secs_to_duration(1.0 / self.rate.max(f64::MIN_POSITIVE)));
            }
        }
        let mut b = TokenBucket::new(self.rate, self.burst, now);
        let took = b.take_or_wait(now);
        buckets.insert(key.clone(), b);
        took
    }

    /// How many keys have a bucket now (at most the bound).
    #[must_use]
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no key has a bucket.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `Retry-After` of a refusal whose bucket refills in `wait`: whole
/// seconds (the header's only unit), rounded up so that a client that
/// waits that long finds a token, and at least 1 so that it never retries
/// at once.
#[must_use]
pub fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs();
    let secs = if wait.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    };
    secs.max(1)
}

/// What [`RequestLimit::check`] decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Under the limit: serve it.
    Allowed,
    /// Over the limit: answer `429` without doing any of the work.
    Refused(Refusal),
}

/// A request refused by a [`RequestLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Until the peer's next token.
    pub wait: Duration,
    /// Whether this is the peer's first refusal in the notice interval:
    /// the caller logs this one and only counts the rest, so a flood costs
    /// one log line per peer per interval.
    pub notify: bool,
}

impl Refusal {
    /// The `Retry-After` value, in whole seconds (see [`retry_after_secs`]).
    #[must_use]
    pub fn retry_after_secs(&self) -> u64 {
        retry_after_secs(self.wait)
    }
}

/// Requests per key (a peer address): `rate` a second with bursts of
/// `burst`, at most `max_keys` keys tracked, and one notice per key per
/// `notice_interval` when it is over the limit.
///
/// A refused request costs one lock and a few float operations: no I/O,
/// no allocation once the key is known.
#[derive(Debug)]
pub struct RequestLimit<K> {
    requests: KeyedBuckets<K>,
    notices: KeyedBuckets<K>,
}

impl<K: Hash + Eq + Clone> RequestLimit<K> {
    /// A limit of `rate` requests a second per key with bursts of `burst`,
    /// keeping at most `max_keys` keys (for the requests and, separately,
    /// for the notices), with at most one notice per key per
    /// `notice_interval`.
    #[must_use]
    pub fn new(rate: f64, burst: u32, max_keys: usize, notice_interval: Duration) -> Self {
        let notice_rate = 1.0 / notice_interval.as_secs_f64().max(f64::MIN_POSITIVE);
        Self {
            requests: KeyedBuckets::bounded(rate, burst, max_keys),
            notices: KeyedBuckets::bounded(notice_rate, 1, max_keys),
        }
    }

    /// Count a request from `key` at `now` against its limit.
    pub fn check(&self, key: &K, now: Instant) -> Verdict {
        match self.requests.take_or_wait(key, now) {
            Ok(()) => Verdict::Allowed,
            Err(wait) => Verdict::Refused(Refusal {
                wait,
                notify: self.notices.try_take(key, now),
            }),
        }
    }

    /// How many keys have a request bucket now.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.requests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceId;
    use std::net::{IpAddr, Ipv4Addr};

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
        // Waiting exactly that long finds the token.
        assert_eq!(b.take_or_wait(start + wait), Ok(()));
    }

    #[test]
    fn a_rate_of_zero_waits_forever_without_panicking() {
        let start = Instant::now();
        let mut b = TokenBucket::new(0.0, 1, start);
        assert!(b.try_take(start));
        assert_eq!(b.take_or_wait(start), Err(Duration::MAX));
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn a_bounded_set_drops_refilled_buckets_and_refuses_when_all_are_owed() {
        let start = Instant::now();
        let buckets: KeyedBuckets<u32> = KeyedBuckets::bounded(1.0, 1, 2);
        assert!(buckets.try_take(&1, start));
        assert!(buckets.try_take(&2, start));
        // Both owe a token: a third key is refused, not tracked.
        assert!(buckets.take_or_wait(&3, start).is_err());
        assert_eq!(buckets.len(), 2);
        // A second later both have refilled; the third key takes a place.
        assert!(buckets.try_take(&3, start + Duration::from_secs(1)));
        assert_eq!(buckets.len(), 1);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(999)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
        assert_eq!(retry_after_secs(Duration::from_nanos(7_000_000_001)), 8);
    }

    #[test]
    fn a_peer_over_its_limit_is_refused_with_a_wait_that_suffices() {
        let start = Instant::now();
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let limit = RequestLimit::new(0.5, 3, 16, Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(limit.check(&peer, start), Verdict::Allowed);
        }
        let Verdict::Refused(refusal) = limit.check(&peer, start) else {
            panic!("the fourth request of a burst of 3 is refused");
        };
        // One token at 0.5 a second: two seconds.
        assert!(
            (refusal.wait.as_secs_f64() - 2.0).abs() < 1e-6,
            "{refusal:?}"
        );
        assert_eq!(refusal.retry_after_secs(), 2);
        // Another peer has its own budget.
        assert_eq!(limit.check(&other, start), Verdict::Allowed);
        // After Retry-After, the peer is served again.
        let later = start + Duration::from_secs(refusal.retry_after_secs());
        assert_eq!(limit.check(&peer, later), Verdict::Allowed);
        assert_eq!(limit.tracked(), 2);
    }

    #[test]
    fn a_flooding_peer_is_noticed_once_per_interval() {
        let start = Instant::now();
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let limit = RequestLimit::new(1.0, 1, 16, Duration::from_secs(60));
        let notices = |from: &IpAddr, at: Instant, n: usize| {
            (0..n)
                .filter(|_| matches!(limit.check(from, at), Verdict::Refused(r) if r.notify))
                .count()
        };
        assert_eq!(limit.check(&peer, start), Verdict::Allowed);
        // A thousand refusals in the same instant: one notice.
        assert_eq!(notices(&peer, start, 1000), 1);
        // Half an interval later, still none.
        assert_eq!(notices(&peer, start + Duration::from_secs(30), 1000), 0);
        // Another peer's flood is noticed on its own.
        assert_eq!(limit.check(&other, start), Verdict::Allowed);
        assert_eq!(notices(&other, start, 10), 1);
        // The next interval: one more notice for the first peer.
        assert_eq!(notices(&peer, start + Duration::from_secs(61), 1000), 1);
    }

    #[test]
    fn a_flood_of_new_addresses_keeps_at_most_the_bound() {
        let start = Instant::now();
        let limit = RequestLimit::new(1.0, 2, 100, Duration::from_secs(60));
        let mut refused = 0;
        for i in 0..10_000u32 {
            let peer = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            // Each new address spends one of its two tokens, so it is owed.
            if matches!(limit.check(&peer, start), Verdict::Refused(_)) {
                refused += 1;
            }
        }
        assert_eq!(limit.tracked(), 100);
        assert_eq!(refused, 10_000 - 100);
    }
}
