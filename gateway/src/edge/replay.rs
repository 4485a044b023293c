//! Replay protection: each device's `seq` must strictly increase.
//!
//! Every message a device publishes carries a monotonic `seq`
//! (`wardgate-protocol`). [`SeqTracker`] holds the last accepted value per
//! device for the whole edge, so a replay is refused across reconnects, and
//! the session seeds it from and saves it to the registry so it survives a
//! restart. A `seq` that is not greater than the last accepted one is a
//! [`Violation::Replay`].

use std::collections::HashMap;
use std::sync::Mutex;

use wardgate_protocol::DeviceId;

use super::violation::Violation;

/// Last accepted `seq` per device, shared by all sessions of one edge, so a
/// replay across reconnects is refused too. Seeded from the registry's
/// `last_seq` on CONNECT and saved back when a session ends, so it also
/// survives a gateway restart (a crash loses the values of the sessions
/// that were live).
#[derive(Debug, Default)]
pub struct SeqTracker {
    last: Mutex<HashMap<DeviceId, u64>>,
}

impl SeqTracker {
    /// Seed the last accepted `seq` of `device` from storage, unless this
    /// tracker already knows a value (which is then at least as fresh).
    pub fn seed(&self, device: &DeviceId, stored: Option<u64>) {
        if let Some(seq) = stored {
            let mut map = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(device.clone()).or_insert(seq);
        }
    }

    /// The last accepted `seq` of `device`.
    #[must_use]
    pub fn last(&self, device: &DeviceId) -> Option<u64> {
        let map = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(device).copied()
    }

    /// Accept `seq` for `device` if it is strictly greater than the last one.
    ///
    /// # Errors
    /// [`Violation::Replay`] otherwise.
    pub fn advance(&self, device: &DeviceId, seq: u64) -> Result<(), Violation> {
        let mut map = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get_mut(device) {
            Some(last) if seq <= *last => Err(Violation::Replay { seq, last: *last }),
            Some(last) => {
                *last = seq;
                Ok(())
            }
            None => {
                map.insert(device.clone(), seq);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

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
}
