//! Firmware custom metadata carried in each target's `custom` field.
//!
//! ```json
//! "custom": {
//!   "hardware_ids": ["acme-pump-v2"],
//!   "version": "2.1.0",
//!   "min_version": "2.0.0",
//!   "release_notes": "Fixes occlusion alarm latency"
//! }
//! ```
//!
//! `version` and `min_version` are semver. Gateways and devices read the same
//! fields (`docs/architecture.md`, "Devices verify too").

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{Error, Result};

/// The firmware facts a manufacturer signs with each image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareMeta {
    /// Hardware models this image installs on (at least one).
    pub hardware_ids: Vec<String>,
    /// The image's version.
    pub version: semver::Version,
    /// The lowest installed version this image may be installed over, if any.
    pub min_version: Option<semver::Version>,
    /// Free-text release notes.
    pub release_notes: Option<String>,
}

impl FirmwareMeta {
    /// Checks the fields (at least one non-empty hardware id).
    pub fn new(
        hardware_ids: Vec<String>,
        version: semver::Version,
        min_version: Option<semver::Version>,
        release_notes: Option<String>,
    ) -> Result<Self> {
        let m = Self {
            hardware_ids,
            version,
            min_version,
            release_notes,
        };
        m.check("<new release>")?;
        Ok(m)
    }

    fn check(&self, target: &str) -> Result<()> {
        let bad = |reason: String| Error::InvalidCustom {
            target: target.to_owned(),
            reason,
        };
        if self.hardware_ids.is_empty() {
            return Err(bad(
                "hardware_ids is empty; name at least one hardware model".into(),
            ));
        }
        if self
            .hardware_ids
            .iter()
            .any(|h| h.is_empty() || h.len() > 128 || h.chars().any(char::is_control))
        {
            return Err(bad(
                "a hardware id is empty, longer than 128 characters or holds control characters"
                    .into(),
            ));
        }
        if let Some(min) = &self.min_version {
            if min > &self.version {
                return Err(bad(format!(
                    "min_version {min} is above version {}",
                    self.version
                )));
            }
        }
        Ok(())
    }

    /// The target's `custom` map.
    pub fn to_custom(&self) -> HashMap<String, Value> {
        let mut m = HashMap::new();
        m.insert(
            "hardware_ids".to_owned(),
            Value::Array(
                self.hardware_ids
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
        );
        m.insert(
            "version".to_owned(),
            Value::String(self.version.to_string()),
        );
        if let Some(min) = &self.min_version {
            m.insert("min_version".to_owned(), Value::String(min.to_string()));
        }
        if let Some(notes) = &self.release_notes {
            m.insert("release_notes".to_owned(), Value::String(notes.clone()));
        }
        m
    }

    /// Reads and checks a target's `custom` map.
    pub fn from_custom(target: &str, custom: &HashMap<String, Value>) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidCustom {
            target: target.to_owned(),
            reason: reason.to_owned(),
        };
        let hardware_ids = match custom.get("hardware_ids") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad("hardware_ids holds a non-string"))
                })
                .collect::<Result<Vec<_>>>()?,
            _ => return Err(bad("hardware_ids is missing or not a list")),
        };
        let version = match custom.get("version") {
            Some(Value::String(s)) => {
                semver::Version::parse(s).map_err(|_| bad("version is not semver"))?
            }
            _ => return Err(bad("version is missing or not a string")),
        };
        let min_version = match custom.get("min_version") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(semver::Version::parse(s).map_err(|_| bad("min_version is not semver"))?)
            }
            Some(_) => return Err(bad("min_version is not a string")),
        };
        let release_notes = match custom.get("release_notes") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("release_notes is not a string")),
        };
        let m = Self {
            hardware_ids,
            version,
            min_version,
            release_notes,
        };
        m.check(target)?;
        Ok(m)
    }

    /// Whether two releases are for overlapping hardware.
    pub fn shares_hardware(&self, other: &FirmwareMeta) -> bool {
        self.hardware_ids
            .iter()
            .any(|h| other.hardware_ids.contains(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_round_trip() {
        let m = FirmwareMeta::new(
            vec!["pump-v2".into()],
            "2.1.0".parse().unwrap(),
            Some("2.0.0".parse().unwrap()),
            Some("notes".into()),
        )
        .unwrap();
        assert_eq!(FirmwareMeta::from_custom("t", &m.to_custom()).unwrap(), m);
    }

    #[test]
    fn refuses_bad_custom() {
        let mut c = HashMap::new();
        c.insert("hardware_ids".to_owned(), serde_json::json!(["x"]));
        c.insert("version".to_owned(), serde_json::json!("two"));
        assert!(FirmwareMeta::from_custom("t", &c).is_err());
        c.insert("version".to_owned(), serde_json::json!("1.0.0"));
        c.insert("min_version".to_owned(), serde_json::json!("2.0.0"));
        assert!(FirmwareMeta::from_custom("t", &c).is_err());
        assert!(FirmwareMeta::new(vec![], "1.0.0".parse().unwrap(), None, None).is_err());
    }
}
