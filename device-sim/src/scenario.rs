//! A scenario file (TOML): a ward of devices and a timeline of clinical
//! events and labelled attacks, so tests, the benchmark, the evaluation and
//! the demo all run the same scenarios.
//!
//! ```toml
//! name = "ward-7-clean-hour"
//! seed = 7
//! duration = "1h"
//!
//! [[devices]]
//! kind = "patient_monitor"      # patient_monitor | pulse_oximeter | ventilator | infusion_pump
//! count = 20
//! prefix = "monitor"            # ids monitor-00, monitor-01, ...
//! interval = "1s"
//!
//! [[clinical]]
//! device = "monitor-03"
//! event = "desaturation"        # desaturation | tachycardia
//! at = "10m"
//!
//! [[attacks]]
//! kind = "publish_flood"        # see attack::AttackKind
//! device = "monitor-05"
//! at = "20m"
//! duration = "30s"
//! ```
//!
//! Shipped scenarios live in `device-sim/scenarios/`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wardgate_protocol::DeviceId;

use crate::attack::AttackKind;
use crate::patient::ClinicalEvent;
use crate::steps::DeviceKind;

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid scenario (the parser names the field).
    #[error("invalid scenario: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of bounds or names an unknown device.
    #[error("invalid scenario: {field}: {reason}")]
    Invalid {
        /// Which field.
        field: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
}

/// A group of identical devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceGroup {
    /// What they are.
    pub kind: DeviceKind,
    /// How many.
    pub count: usize,
    /// Id prefix (`<prefix>-<i>`, two digits).
    pub prefix: String,
    /// Time between readings.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

/// A clinical event at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicalEntry {
    /// The patient's device.
    pub device: DeviceId,
    /// What happens.
    pub event: ClinicalEvent,
    /// When it starts.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
}

/// A labelled attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackEntry {
    /// Which attack.
    pub kind: AttackKind,
    /// The device attacked or misused.
    pub device: DeviceId,
    /// When it starts.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// How long it lasts (`30s` when absent).
    #[serde(default = "default_attack", with = "humantime_serde")]
    pub duration: Duration,
}

fn default_attack() -> Duration {
    Duration::from_secs(30)
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name, for reports.
    pub name: String,
    /// Seed of every random choice (reproducible).
    #[serde(default)]
    pub seed: u64,
    /// Length of the timeline.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// The ward.
    pub devices: Vec<DeviceGroup>,
    /// Clinical events (clean data).
    #[serde(default)]
    pub clinical: Vec<ClinicalEntry>,
    /// Attacks (labelled).
    #[serde(default)]
    pub attacks: Vec<AttackEntry>,
}

impl Scenario {
    /// Parse and check a scenario from TOML text.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the field at fault.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.check()?;
        Ok(s)
    }

    /// Read and check a scenario file.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the file or field at fault.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Every device id of the ward, in group order.
    ///
    /// # Errors
    /// [`ScenarioError::Invalid`] if a prefix makes an invalid id.
    pub fn device_ids(&self) -> Result<Vec<(DeviceId, &DeviceGroup)>, ScenarioError> {
        let mut out = Vec::new();
        for (g_i, g) in self.devices.iter().enumerate() {
            for i in 0..g.count {
                let id = DeviceId::parse(&format!("{}-{i:02}", g.prefix)).map_err(|e| {
                    ScenarioError::Invalid {
                        field: format!("devices[{g_i}].prefix"),
                        reason: e.to_string(),
                    }
                })?;
                out.push((id, g));
            }
        }
        Ok(out)
    }

    fn check(&self) -> Result<(), ScenarioError> {
        let bad = |field: String, reason: &str| {
            Err(ScenarioError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.duration.is_zero() || self.duration > Duration::from_secs(7 * 86_400) {
            return bad("duration".into(), "must be between 1s and 7 days");
        }
        let total: usize = self.devices.iter().map(|g| g.count).sum();
        if total == 0 || total > 20_000 {
            return bad("devices".into(), "the ward needs 1 to 20000 devices");
        }
        for (i, g) in self.devices.iter().enumerate() {
            if g.interval < Duration::from_millis(10) || g.interval > Duration::from_secs(3600) {
                return bad(
                    format!("devices[{i}].interval"),
                    "must be between 10ms and 1h",
                );
            }
        }
        let ids: std::collections::HashSet<DeviceId> =
            self.device_ids()?.into_iter().map(|(d, _)| d).collect();
        if ids.len() != total {
            return bad(
                "devices".into(),
                "two groups produce the same device id; use distinct prefixes",
            );
        }
        for (i, c) in self.clinical.iter().enumerate() {
            if !ids.contains(&c.device) {
                return bad(
                    format!("clinical[{i}].device"),
                    "is not a device of the ward",
                );
            }
        }
        for (i, a) in self.attacks.iter().enumerate() {
            if !ids.contains(&a.device) {
                return bad(
                    format!("attacks[{i}].device"),
                    "is not a device of the ward",
                );
            }
            if a.duration.is_zero() || a.at + a.duration > self.duration {
                return bad(
                    format!("attacks[{i}].duration"),
                    "must be positive and end within the scenario's duration",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
name = "t"
seed = 1
duration = "10m"
[[devices]]
kind = "patient_monitor"
count = 3
prefix = "monitor"
interval = "1s"
[[clinical]]
device = "monitor-01"
event = "tachycardia"
at = "1m"
[[attacks]]
kind = "publish_flood"
device = "monitor-02"
at = "2m"
"#;

    #[test]
    fn parses_and_names_bad_fields() {
        let s = Scenario::parse(TEXT).unwrap();
        assert_eq!(s.attacks[0].duration, Duration::from_secs(30));
        assert_eq!(s.device_ids().unwrap().len(), 3);
        let e = Scenario::parse(&TEXT.replace("monitor-02", "pump-99"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("attacks[0].device"), "{e}");
        let e = Scenario::parse(&TEXT.replace("publish_flood", "ransomware"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant"), "{e}");
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 2);
    }
}
