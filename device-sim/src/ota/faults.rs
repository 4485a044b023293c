//! Fault switches for tests and the demo.
//!
//! A simulated device can be told to misbehave in the ways a rollout must
//! survive: an image that fails its self-test, a power cut in the middle of
//! a download, therapy in progress for a while, a self-test too slow to
//! confirm health in time, therapy that starts just as an offer arrives
//! (after the device's last status said idle, so the gateway offers anyway
//! and the device must refuse it itself). Each switch has a text form for the command
//! line (`--fault self-test-fails=2.1.0`), parsed by [`Fault::from_str`].

use std::str::FromStr;
use std::time::Duration;

/// What a simulated power loss does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PowerLossMode {
    /// Stop the device's update and hand [`crate::ota::OtaError::PowerLoss`]
    /// to the caller (in-process tests then drop the device and reopen its
    /// state folder, as after a restart).
    #[default]
    StopClient,
    /// End the whole process at once with exit code 137, as `kill -9`
    /// would, without flushing or saving anything more.
    ExitProcess,
}

/// One fault switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `self-test-fails=<version or target name>`: the self-test of that
    /// image fails after it is booted.
    SelfTestFails(String),
    /// `self-test-takes=<duration>`: the self-test takes this long (longer
    /// than the health window makes the device roll back).
    SelfTestTakes(Duration),
    /// `power-loss-after=<bytes>`: power is lost once this many bytes of an
    /// image are in the slot.
    PowerLossAfter(u64),
    /// `therapy-for=<duration>`: therapy is in progress from start for this
    /// long, then the device is idle.
    TherapyFor(Duration),
    /// `therapy-on-offer=<duration>`: therapy starts the moment the first
    /// offer arrives, before the device handles it, and lasts this long. The
    /// device's last `status` said idle (a nurse started an infusion while
    /// the gateway's offer was on its way), so the gateway had no reason to
    /// hold the offer back: the device refuses it itself (`deferred`) and
    /// publishes its therapy in its next status.
    TherapyOnOffer(Duration),
}

/// Why a fault switch's text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault switch {input:?}: {reason}; use self-test-fails=<version|target>, self-test-takes=<duration>, power-loss-after=<bytes>, therapy-for=<duration> or therapy-on-offer=<duration> (durations like 500ms, 30s, 2m)")]
pub struct FaultParseError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parse `500ms`, `30s`, `2m` (or plain seconds).
///
/// # Errors
/// A reason in words if the text is not such a duration.
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| "the duration has no number")?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err("the duration unit is not ms, s or m"),
    }
}

impl FromStr for Fault {
    type Err = FaultParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| FaultParseError {
            input: s.chars().take(80).collect(),
            reason,
        };
        let (name, value) = s.split_once('=').ok_or_else(|| err("no `=`"))?;
        if value.is_empty() {
            return Err(err("no value after `=`"));
        }
        match name {
            "self-test-fails" => Ok(Fault::SelfTestFails(value.to_owned())),
            "self-test-takes" => parse_duration(value).map(Fault::SelfTestTakes).map_err(err),
            "power-loss-after" => value
                .parse()
                .map(Fault::PowerLossAfter)
                .map_err(|_| err("the byte count is not a whole number")),
            "therapy-for" => parse_duration(value).map(Fault::TherapyFor).map_err(err),
            "therapy-on-offer" => parse_duration(value)
                .map(Fault::TherapyOnOffer)
                .map_err(err),
            _ => Err(err("unknown fault name")),
        }
    }
}

/// The fault switches of one device (all off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Images (by version or target name) whose self-test fails.
    pub self_test_fails: Vec<String>,
    /// How long the self-test takes.
    pub self_test_takes: Option<Duration>,
    /// Lose power once this many bytes of an image are in the slot. Only a
    /// download that crosses the mark loses power: one resumed from it
    /// carries on.
    pub power_loss_after: Option<u64>,
    /// What a power loss does.
    pub power_loss_mode: PowerLossMode,
    /// Therapy in progress from start for this long.
    pub therapy_for: Option<Duration>,
    /// Therapy starts when the first offer arrives, for this long.
    pub therapy_on_offer: Option<Duration>,
}

impl Faults {
    /// Whether the self-test of `target_name` at `version` is to fail.
    #[must_use]
    pub fn self_test_fails_for(&self, target_name: &str, version: &semver::Version) -> bool {
        let version = version.to_string();
        self.self_test_fails
            .iter()
            .any(|f| f == target_name || *f == version)
    }
}

impl FromIterator<Fault> for Faults {
    fn from_iter<I: IntoIterator<Item = Fault>>(iter: I) -> Self {
        let mut f = Faults::default();
        for fault in iter {
            match fault {
                Fault::SelfTestFails(v) => f.self_test_fails.push(v),
                Fault::SelfTestTakes(d) => f.self_test_takes = Some(d),
                Fault::PowerLossAfter(n) => f.power_loss_after = Some(n),
                Fault::TherapyFor(d) => f.therapy_for = Some(d),
                Fault::TherapyOnOffer(d) => f.therapy_on_offer = Some(d),
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_parse_from_their_text() {
        let faults: Faults = [
            "self-test-fails=2.1.0",
            "self-test-takes=1500ms",
            "power-loss-after=65536",
            "therapy-for=2m",
            "therapy-on-offer=8s",
        ]
        .iter()
        .map(|s| s.parse::<Fault>().unwrap())
        .collect();
        assert!(faults.self_test_fails_for("acme/x.bin", &semver::Version::new(2, 1, 0)));
        assert!(!faults.self_test_fails_for("acme/x.bin", &semver::Version::new(2, 1, 1)));
        assert_eq!(faults.self_test_takes, Some(Duration::from_millis(1500)));
        assert_eq!(faults.power_loss_after, Some(65536));
        assert_eq!(faults.therapy_for, Some(Duration::from_secs(120)));
        assert_eq!(faults.therapy_on_offer, Some(Duration::from_secs(8)));
        assert_eq!(faults.power_loss_mode, PowerLossMode::StopClient);
    }

    #[test]
    fn bad_switches_say_what_is_accepted() {
        for bad in [
            "self-test-fails",
            "power-loss-after=lots",
            "therapy-for=3h",
            "explode=1",
            "therapy-for=",
        ] {
            let e = bad.parse::<Fault>().unwrap_err().to_string();
            assert!(e.contains("power-loss-after=<bytes>"), "{e}");
        }
    }
}
