//! Replay protection that is exact and QoS 1 correct.
//!
//! Every message a device publishes (telemetry, status and OTA reports
//! alike) carries `seq` from one monotonic counter per device
//! (`wardgate-protocol`). For each device the edge knows the highest
//! *stored* `seq` and the [`PayloadDigest`]s of the device's last
//! [`REPLAY_WINDOW`] stored messages. A PUBLISH is then:
//!
//! - **new** if its `seq` is above everything stored or in flight in the
//!   session: it is stored (telemetry in the outbox row, every kind in the
//!   device's replay state, in one transaction) and only then forwarded and
//!   acknowledged;
//! - a **resend** if its `seq` and payload digest equal one of the recent
//!   stored (or, in this session, in-flight) messages: the MQTT 3.1.1 / 5
//!   section 4.4 redelivery of a message whose PUBACK was lost, with DUP set
//!   or not. It is acknowledged again once its original is stored, and is
//!   neither stored nor forwarded a second time, and is not a violation;
//! - a **replay** otherwise (an old `seq`, or a known `seq` with another
//!   payload): [`Violation::Replay`].
//!
//! `seq` advances only when the message is stored: the outbox thread writes
//! `devices.last_seq` and the digest ring (`device_seq_recent`) in the same
//! SQLite transaction as the outbox row, so a crash neither loses a stored
//! `seq` nor refuses a legitimate resend. Status and OTA reports (no outbox
//! row) and all messages when the uplink is off are stored the same way,
//! replay state only. A message the store refused (outbox full) leaves no
//! trace and can be resent once there is room; so that per-device order
//! holds, the store also refuses every later message of that session
//! ([`crate::sink::SinkError::OutOfOrder`]).
//!
//! [`SeqTracker`] holds the stored state of every device seen, for the
//! whole edge; each session seeds it from the database at CONNECT and
//! checks against it plus its own in-flight messages ([`SessionSeqs`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use wardgate_protocol::DeviceId;

use super::violation::Violation;
pub use crate::stored_seq::{PayloadDigest, StoredSeqs, REPLAY_WINDOW};

/// How a PUBLISH's `seq` relates to what the device already sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Above everything stored or in flight: store it.
    New,
    /// A resend of a stored or in-flight message: acknowledge it again.
    Resend,
}

/// Stored `seq` state per device, shared by all sessions of one edge.
#[derive(Debug, Default)]
pub struct SeqTracker {
    devices: Mutex<HashMap<DeviceId, StoredSeqs>>,
}

impl SeqTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, StoredSeqs>> {
        self.devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seed `device` from storage, unless this tracker already knows it
    /// (its value is then at least as fresh).
    pub fn seed(&self, device: &DeviceId, stored: StoredSeqs) {
        self.lock().entry(device.clone()).or_insert(stored);
    }

    /// The highest stored `seq` of `device`.
    #[must_use]
    pub fn last(&self, device: &DeviceId) -> Option<u64> {
        self.lock().get(device).and_then(|s| s.last)
    }

    /// Record that a message of `device` was stored.
    pub fn stored(&self, device: &DeviceId, seq: u64, digest: PayloadDigest) {
        self.lock()
            .entry(device.clone())
            .or_default()
            .push(seq, digest);
    }

    /// Classify a PUBLISH of `device` given the session's in-flight
    /// messages.
    ///
    /// # Errors
    /// [`Violation::Replay`] for an old `seq` that is not a resend.
    pub fn check(
        &self,
        device: &DeviceId,
        seq: u64,
        digest: PayloadDigest,
        session: &SessionSeqs,
    ) -> Result<SeqVerdict, Violation> {
        let map = self.lock();
        let stored = map.get(device);
        let high = match (stored.and_then(|s| s.last), session.high()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        match high {
            Some(last) if seq <= last => {
                if session.knows(seq, digest) || stored.is_some_and(|s| s.knows(seq, digest)) {
                    Ok(SeqVerdict::Resend)
                } else {
                    Err(Violation::Replay { seq, last })
                }
            }
            _ => Ok(SeqVerdict::New),
        }
    }

    /// Accept `seq` for `device` at once if it is strictly greater than the
    /// last one (no store, no resends: for callers without a store).
    ///
    /// # Errors
    /// [`Violation::Replay`] otherwise.
    pub fn advance(&self, device: &DeviceId, seq: u64) -> Result<(), Violation> {
        let mut map = self.lock();
        let state = map.entry(device.clone()).or_default();
        match state.last {
            Some(last) if seq <= last => Err(Violation::Replay { seq, last }),
            _ => {
                state.last = Some(seq);
                Ok(())
            }
        }
    }
}

/// The messages a session accepted as new and sent to the store, most
/// recent [`REPLAY_WINDOW`] kept: the session's part of the replay check.
#[derive(Debug, Default)]
pub struct SessionSeqs {
    accepted: VecDeque<(u64, PayloadDigest)>,
    high: Option<u64>,
}

impl SessionSeqs {
    /// Note a message accepted as new.
    pub fn accepted(&mut self, seq: u64, digest: PayloadDigest) {
        if self.accepted.len() == REPLAY_WINDOW {
            self.accepted.pop_front();
        }
        self.accepted.push_back((seq, digest));
        self.high = Some(self.high.map_or(seq, |h| h.max(seq)));
    }

    /// The highest `seq` accepted in this session.
    #[must_use]
    pub fn high(&self) -> Option<u64> {
        self.high
    }

    /// The `seq` of the last message accepted, the store's precondition for
    /// the next one.
    #[must_use]
    pub fn previous(&self) -> Option<u64> {
        self.accepted.back().map(|&(s, _)| s)
    }

    fn knows(&self, seq: u64, digest: PayloadDigest) -> bool {
        self.accepted.iter().any(|&(s, d)| s == seq && d == digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::id;

    #[test]
    fn seq_must_strictly_increase_per_device() {
        let t = SeqTracker::default();
        let d = id("a");
        t.advance(&d, 5).unwrap();
        assert!(matches!(
            t.advance(&d, 5),
            Err(Violation::Replay { seq: 5, last: 5 })
        ));
        assert!(t.advance(&d, 4).is_err());
        t.advance(&d, 6).unwrap();
        t.advance(&id("b"), 1).unwrap();
    }

    #[test]
    fn a_resend_of_a_stored_message_is_not_a_replay_but_another_payload_is() {
        let t = SeqTracker::default();
        let d = id("a");
        let (p1, p2) = (PayloadDigest::of(b"one"), PayloadDigest::of(b"two"));
        let none = SessionSeqs::default();
        assert_eq!(t.check(&d, 1, p1, &none), Ok(SeqVerdict::New));
        t.stored(&d, 1, p1);
        t.stored(&d, 2, p2);
        assert_eq!(t.check(&d, 2, p2, &none), Ok(SeqVerdict::Resend));
        assert_eq!(t.check(&d, 1, p1, &none), Ok(SeqVerdict::Resend));
        assert_eq!(
            t.check(&d, 2, p1, &none),
            Err(Violation::Replay { seq: 2, last: 2 })
        );
        assert_eq!(t.check(&d, 3, p1, &none), Ok(SeqVerdict::New));
        // In flight in this session, not stored yet: a resend too, and the
        // high-water mark includes it.
        let mut s = SessionSeqs::default();
        s.accepted(3, p1);
        assert_eq!(t.check(&d, 3, p1, &s), Ok(SeqVerdict::Resend));
        assert!(t.check(&d, 3, p2, &s).is_err());
        assert_eq!(s.previous(), Some(3));
    }

    #[test]
    fn only_the_recent_window_is_remembered() {
        let t = SeqTracker::default();
        let d = id("a");
        let none = SessionSeqs::default();
        for seq in 1..=(REPLAY_WINDOW as u64 + 1) {
            t.stored(&d, seq, PayloadDigest::of(&seq.to_be_bytes()));
        }
        let first = PayloadDigest::of(&1u64.to_be_bytes());
        assert!(
            t.check(&d, 1, first, &none).is_err(),
            "fell out of the window"
        );
        let second = PayloadDigest::of(&2u64.to_be_bytes());
        assert_eq!(t.check(&d, 2, second, &none), Ok(SeqVerdict::Resend));
    }
}
