//! What is stored about each device's message sequence: the highest
//! stored `seq` and the digests of its last [`REPLAY_WINDOW`] messages.
//!
//! A leaf module: the edge's replay protection (`edge::replay`) decides
//! with it, and the registry, the sink and the outbox worker persist it,
//! without any of them depending on the edge.

use std::collections::VecDeque;

use sha2::{Digest as _, Sha256};

/// How many recent stored messages per device are remembered for resends;
/// at least the in-flight window (the edge's in-flight window (`edge::IN_FLIGHT_WINDOW`)) plus
/// PUBACKs that can be lost in a dropped connection.
pub const REPLAY_WINDOW: usize = 64;

/// The first 16 bytes of a payload's SHA-256: enough to tell a resend from
/// a different message under the same `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadDigest(pub [u8; 16]);

impl PayloadDigest {
    /// The digest of `payload`.
    #[must_use]
    pub fn of(payload: &[u8]) -> Self {
        let full = Sha256::digest(payload);
        let mut d = [0u8; 16];
        d.copy_from_slice(&full[..16]);
        Self(d)
    }

    /// From stored bytes, if they are 16 long.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().map(Self)
    }
}

/// What is stored about a device's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSeqs {
    /// The highest stored `seq`.
    pub last: Option<u64>,
    /// The most recent stored messages, oldest first, at most
    /// [`REPLAY_WINDOW`].
    pub recent: VecDeque<(u64, PayloadDigest)>,
}

impl StoredSeqs {
    /// Record a stored message.
    pub fn push(&mut self, seq: u64, digest: PayloadDigest) {
        if self.last.is_none_or(|l| seq > l) {
            self.last = Some(seq);
        }
        if self.recent.len() == REPLAY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((seq, digest));
    }

    /// Whether `seq` with this payload is among the recent stored messages.
    #[must_use]
    pub fn knows(&self, seq: u64, digest: PayloadDigest) -> bool {
        self.recent.iter().any(|&(s, d)| s == seq && d == digest)
    }
}
