//! Whether the device is delivering therapy.
//!
//! An infusion pump in the middle of an infusion must never be interrupted
//! by an update. The gateway holds offers back while a device's status says
//! `therapy_in_progress`; the device refuses them too (defence in depth), so
//! a gateway that gets it wrong still cannot stop a running infusion.
//! [`Therapy`] is a shared handle: the session publishes the activity in
//! `status`, the update client checks it before starting and before
//! installing.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use wardgate_protocol::DeviceActivity;

/// Shared therapy state of one device (clones see the same state).
#[derive(Debug, Clone, Default)]
pub struct Therapy {
    until: Arc<Mutex<Option<Instant>>>,
}

impl Therapy {
    /// A device not delivering therapy.
    #[must_use]
    pub fn idle() -> Self {
        Self::default()
    }

    /// Therapy runs from now for `duration`, then the device is idle.
    pub fn start_for(&self, duration: Duration) {
        *self.until.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Instant::now() + duration);
    }

    /// Therapy ends now.
    pub fn stop(&self) {
        *self.until.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Time left until therapy ends, if it is in progress.
    #[must_use]
    pub fn remaining(&self) -> Option<Duration> {
        let until = *self.until.lock().unwrap_or_else(PoisonError::into_inner);
        until
            .map(|u| u.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    /// Whether therapy is in progress.
    #[must_use]
    pub fn in_progress(&self) -> bool {
        self.remaining().is_some()
    }

    /// The activity to report in `status` (the update state aside).
    #[must_use]
    pub fn activity(&self) -> DeviceActivity {
        if self.in_progress() {
            DeviceActivity::TherapyInProgress
        } else {
            DeviceActivity::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn therapy_ends_after_its_duration() {
        let t = Therapy::idle();
        assert_eq!(t.activity(), DeviceActivity::Idle);
        let shared = t.clone();
        t.start_for(Duration::from_secs(30));
        assert_eq!(shared.activity(), DeviceActivity::TherapyInProgress);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(shared.in_progress());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(shared.activity(), DeviceActivity::Idle);
        t.start_for(Duration::from_secs(5));
        t.stop();
        assert!(!shared.in_progress());
    }
}
