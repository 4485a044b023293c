//! Refusals before authentication, per peer address: summarised in the
//! audit log and throttled, so that a flood of bad handshakes costs the
//! gateway neither a database write nor a TLS handshake per attempt.
//!
//! A peer's first refusal *of each reason* in an interval
//! (`edge.peer_refusal_interval`, default 60 s) is audited at once, in
//! words, as before: a one-off misconfigured device is never hidden.
//! Further refusals in the same interval are only counted, by reason; when
//! the interval ends, each peer that had more gets **one** summary row
//! (`edge.refused.summary`, with the count and the reasons). A peer that
//! reaches `edge.peer_refusals_before_throttle` refusals (default 100) in
//! an interval is throttled for the rest of it: its new connections are
//! closed at accept, before any TLS work, and counted in the summary as
//! `throttled`. Refusals at `edge.max_connections` are summarised but do
//! not count towards a throttle: they are the gateway's limit, not the
//! peer's fault.
//!
//! So one peer costs at most one audit row per refusal reason (six:
//! `tls_handshake`, `tls_timeout`, `certificate_identity`,
//! `no_client_certificate`, `capacity`, and one per further reason the edge
//! may add) plus one summary per interval, whatever it sends.
//! Honest devices behind one address (a NAT, or every simulated device on
//! loopback) are never throttled: only refusals count, not connections.
//! Memory is bounded: at most [`MAX_PEERS`] addresses are tracked per
//! interval; refusals from further addresses are summed under one
//! `peer:other` row.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Most peer addresses tracked in one interval.
pub const MAX_PEERS: usize = 4096;

/// What a peer did in the current interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerTally {
    /// Refusals, by reason (the first of each, audited at once, included).
    pub reasons: BTreeMap<String, u64>,
    /// Connections closed at accept while throttled.
    pub throttled: u64,
    /// Refusals that count towards a throttle.
    strikes: u64,
}

impl PeerTally {
    /// Refusals counted (without the throttled connections).
    #[must_use]
    pub fn refusals(&self) -> u64 {
        self.reasons.values().sum()
    }
}

/// One summary row's content: who and what, for an ended interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The peer, or `None` for the addresses beyond [`MAX_PEERS`].
    pub peer: Option<IpAddr>,
    /// What it did.
    pub tally: PeerTally,
    /// How long the interval was.
    pub interval: Duration,
}

/// How a refusal is to be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// The peer's first refusal this interval: audit it now, in words.
    First,
    /// Counted for the summary; no row now.
    Counted,
}

#[derive(Debug)]
struct State {
    started: Instant,
    peers: HashMap<IpAddr, PeerTally>,
    other: PeerTally,
}

/// The edge's ledger of refusals before authentication.
#[derive(Debug)]
pub struct PeerRefusals {
    interval: Duration,
    throttle_after: u64,
    state: Mutex<State>,
}

impl PeerRefusals {
    /// A ledger whose intervals last `interval`, throttling a peer once it
    /// has `throttle_after` refusals in one.
    #[must_use]
    pub fn new(interval: Duration, throttle_after: u64, now: Instant) -> Self {
        Self {
            interval,
            throttle_after,
            state: Mutex::new(State {
                started: now,
                peers: HashMap::new(),
                other: PeerTally::default(),
            }),
        }
    }

    /// How long an interval lasts.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is counters only; a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Count a refusal of `peer` for `reason`; `strike`: whether it counts
    /// towards throttling the peer.
    pub fn note(&self, peer: IpAddr, reason: &str, strike: bool) -> Noted {
        let mut state = self.lock();
        let tracked = state.peers.len();
        let tally = match state.peers.get_mut(&peer) {
            Some(t) => t,
            None if tracked < MAX_PEERS => state.peers.entry(peer).or_default(),
            None => {
                *state.other.reasons.entry(reason.to_owned()).or_default() += 1;
                return Noted::Counted;
            }
        };
        let count = tally.reasons.entry(reason.to_owned()).or_default();
        *count += 1;
        let first = *count == 1;
        if strike {
            tally.strikes += 1;
        }
        if first {
            Noted::First
        } else {
            Noted::Counted
        }
    }

    /// Whether `peer` is throttled now; a throttled connection is counted.
    pub fn throttle(&self, peer: IpAddr) -> bool {
        let mut state = self.lock();
        match state.peers.get_mut(&peer) {
            Some(t) if t.strikes >= self.throttle_after => {
                t.throttled += 1;
                true
            }
            _ => false,
        }
    }

    /// If the interval is over at `now` (or `force`, at shutdown): the
    /// summaries of the peers that had more than their first refusal, and
    /// a fresh interval. Throttles end with the interval.
    pub fn take_summaries(&self, now: Instant, force: bool) -> Vec<Summary> {
        let mut state = self.lock();
        let elapsed = now.saturating_duration_since(state.started);
        if !force && elapsed < self.interval {
            return Vec::new();
        }
        let peers = std::mem::take(&mut state.peers);
        let other = std::mem::take(&mut state.other);
        state.started = now;
        drop(state);
        let mut out: Vec<Summary> = peers
            .into_iter()
            .filter(|(_, t)| t.refusals() > t.reasons.len() as u64 || t.throttled > 0)
            .map(|(peer, tally)| Summary {
                peer: Some(peer),
                tally,
                interval: elapsed,
            })
            .collect();
        out.sort_by_key(|s| s.peer);
        if other.refusals() > 0 {
            out.push(Summary {
                peer: None,
                tally: other,
                interval: elapsed,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    // control: audit, resilience
    #[test]
    fn a_flood_from_one_peer_is_a_row_per_reason_and_one_summary_then_throttled() {
        let t0 = Instant::now();
        let ledger = PeerRefusals::new(Duration::from_secs(60), 20, t0);
        let attacker = ip("192.0.2.7");
        let mut rows_now = 0;
        let mut throttled = 0;
        for i in 0..5000 {
            if ledger.throttle(attacker) {
                throttled += 1;
                continue;
            }
            let reason = if i % 2 == 0 {
                "tls_handshake"
            } else {
                "tls_timeout"
            };
            if ledger.note(attacker, reason, true) == Noted::First {
                rows_now += 1;
            }
        }
        assert_eq!(rows_now, 2, "one per reason");
        assert_eq!(throttled, 5000 - 20);
        // An honest peer is unaffected by the attacker's throttle.
        assert!(!ledger.throttle(ip("192.0.2.8")));
        assert!(ledger
            .take_summaries(t0 + Duration::from_secs(59), false)
            .is_empty());
        let s = ledger.take_summaries(t0 + Duration::from_secs(60), false);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].peer, Some(attacker));
        assert_eq!(s[0].tally.refusals(), 20);
        assert_eq!(s[0].tally.throttled, 4980);
        assert_eq!(s[0].tally.reasons["tls_handshake"], 10);
        // A new interval: no throttle, a new first row.
        assert!(!ledger.throttle(attacker));
        assert_eq!(ledger.note(attacker, "tls_handshake", true), Noted::First);
    }

    #[test]
    fn capacity_refusals_are_summarised_but_never_throttle() {
        let t0 = Instant::now();
        let ledger = PeerRefusals::new(Duration::from_secs(60), 3, t0);
        let peer = ip("192.0.2.9");
        for _ in 0..10 {
            ledger.note(peer, "capacity", false);
        }
        assert!(!ledger.throttle(peer));
        let s = ledger.take_summaries(t0, true);
        assert_eq!(s[0].tally.refusals(), 10);
    }

    #[test]
    fn a_single_refusal_has_its_row_and_no_summary() {
        let t0 = Instant::now();
        let ledger = PeerRefusals::new(Duration::from_secs(60), 20, t0);
        assert_eq!(
            ledger.note(ip("192.0.2.1"), "tls_handshake", true),
            Noted::First
        );
        assert!(ledger.take_summaries(t0, true).is_empty());
    }

    #[test]
    fn addresses_beyond_the_bound_are_summed_under_one_row() {
        let t0 = Instant::now();
        let ledger = PeerRefusals::new(Duration::from_secs(60), 20, t0);
        for i in 0..(MAX_PEERS as u32 + 100) {
            let peer = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            ledger.note(peer, "tls_handshake", true);
        }
        let s = ledger.take_summaries(t0, true);
        assert_eq!(
            s.len(),
            1,
            "single refusals need no summary; the overflow does"
        );
        assert_eq!(s[0].peer, None);
        assert_eq!(s[0].tally.refusals(), 100);
    }
}
