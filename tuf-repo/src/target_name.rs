//! Names that come from outside: manufacturer role names and target paths.
//!
//! A [`ManufacturerName`] is the delegated role's name and the first path
//! segment of every target it may publish. A [`TargetPath`] is
//! `<manufacturer>/<file>`: exactly two segments, each from a small safe
//! alphabet, so there is no `..`, no `.`, no absolute path, no backslash, no
//! empty segment and no control character. Both are checked once, at
//! construction, and carried as types from then on.
//!
//! Every `TargetPath` is also a valid tough [`tough::TargetName`] that
//! resolves to itself (tough would silently rewrite `a/../b` to `b`; we refuse
//! it instead), and it matches the delegation pattern `<manufacturer>/*` in
//! both tough (globset) and python-tuf (per-segment fnmatch), because the file
//! segment can never contain `/`.
//!
//! Both (de)serialize as plain strings and run the same check when they are
//! read, so a config file or a JSON body cannot smuggle an unchecked name in.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Longest manufacturer name accepted.
pub const MAX_MANUFACTURER_LEN: usize = 64;
/// Longest file name segment accepted.
pub const MAX_FILE_LEN: usize = 200;

/// A manufacturer's delegated role name, e.g. `acme-medical`.
///
/// Lowercase ASCII letters, digits and `-`; starts with a letter or digit;
/// 1 to 64 characters. Also refuses the top-level role names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ManufacturerName(String);

impl ManufacturerName {
    /// Checks and wraps a manufacturer name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let bad = |reason| Error::InvalidTargetName {
            name: name.clone(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("manufacturer name is empty"));
        }
        if name.len() > MAX_MANUFACTURER_LEN {
            return Err(bad("manufacturer name is longer than 64 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("manufacturer name may only hold a-z, 0-9 and '-'"));
        }
        if name.starts_with('-') {
            return Err(bad("manufacturer name must start with a letter or digit"));
        }
        if matches!(name.as_str(), "root" | "targets" | "snapshot" | "timestamp") {
            return Err(bad("manufacturer name may not be a top-level role name"));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The delegation path pattern for this manufacturer: `<name>/*`.
    pub fn path_pattern(&self) -> String {
        format!("{}/*", self.0)
    }
}

impl fmt::Display for ManufacturerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ManufacturerName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

/// A target path `<manufacturer>/<file>`, e.g. `acme-medical/pump-fw-2.1.0.bin`.
///
/// The file segment holds ASCII letters, digits, `.`, `_`, `-` and `+`, does
/// not start with `.`, and is 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetPath {
    manufacturer: ManufacturerName,
    file: String,
}

impl TargetPath {
    /// Parses and checks a target path.
    pub fn new(raw: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidTargetName {
            name: raw.to_owned(),
            reason,
        };
        if raw.contains('\\') {
            return Err(bad("backslashes are not allowed"));
        }
        if raw.starts_with('/') {
            return Err(bad("absolute paths are not allowed"));
        }
        if raw.split('/').any(|s| s == ".." || s == ".") {
            return Err(bad("'.' and '..' segments are not allowed"));
        }
        if raw.chars().any(char::is_control) {
            return Err(bad("control characters are not allowed"));
        }
        let mut parts = raw.split('/');
        let (Some(m), Some(file), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("a target path is exactly <manufacturer>/<file>"));
        };
        let manufacturer = ManufacturerName::new(m)
            .map_err(|_| bad("the first segment is not a valid manufacturer name"))?;
        Self::in_manufacturer(&manufacturer, file)
            .map_err(|_| bad("the file segment is not a valid file name"))
    }

    /// Builds `<manufacturer>/<file>` from its parts, checking the file name.
    pub fn in_manufacturer(manufacturer: &ManufacturerName, file: &str) -> Result<Self> {
        let full = format!("{manufacturer}/{file}");
        let bad = |reason| Error::InvalidTargetName {
            name: full.clone(),
            reason,
        };
        if file.is_empty() {
            return Err(bad("file name is empty"));
        }
        if file.len() > MAX_FILE_LEN {
            return Err(bad("file name is longer than 200 characters"));
        }
        if file.starts_with('.') {
            return Err(bad("file name may not start with '.'"));
        }
        if !file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
        {
            return Err(bad(
                "file name may only hold A-Z, a-z, 0-9, '.', '_', '-' and '+'",
            ));
        }
        Ok(Self {
            manufacturer: manufacturer.clone(),
            file: file.to_owned(),
        })
    }

    /// The manufacturer (first segment).
    pub fn manufacturer(&self) -> &ManufacturerName {
        &self.manufacturer
    }

    /// The file name (second segment).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Whether this path lies in `role`'s `<role>/*` scope.
    pub fn is_in_scope_of(&self, role: &ManufacturerName) -> bool {
        &self.manufacturer == role
    }

    /// The same name as tough's [`tough::TargetName`].
    pub fn to_tough(&self) -> Result<tough::TargetName> {
        tough::TargetName::new(self.to_string())
            .map_err(|e| Error::tough(format!("target name {self}"), e))
    }

    /// Where python-tuf (and the TUF spec) fetch the image with consistent
    /// snapshots: `<manufacturer>/<sha256>.<file>`, relative to `targets/`.
    pub fn consistent_file_spec(&self, sha256_hex: &str) -> String {
        format!("{}/{}.{}", self.manufacturer, sha256_hex, self.file)
    }

    /// Where tough 0.24 fetches it: `<sha256>.<manufacturer>/<file>`
    /// (it prefixes the whole name, not the base name).
    pub fn consistent_file_tough(&self, sha256_hex: &str) -> String {
        format!("{}.{}/{}", sha256_hex, self.manufacturer, self.file)
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.manufacturer, self.file)
    }
}

impl FromStr for TargetPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl serde::Serialize for ManufacturerName {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ManufacturerName {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for TargetPath {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TargetPath {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_normal_names() {
        let t = TargetPath::new("acme-medical/pump-fw-2.1.0.bin").unwrap();
        assert_eq!(t.manufacturer().as_str(), "acme-medical");
        assert_eq!(t.file(), "pump-fw-2.1.0.bin");
        assert_eq!(t.to_string(), "acme-medical/pump-fw-2.1.0.bin");
    }

    #[test]
    fn refuses_unsafe_names() {
        for bad in [
            "../acme/x.bin",
            "acme/../x.bin",
            "acme/..",
            "/acme/x.bin",
            "acme\\x.bin",
            "acme/x\\y.bin",
            "acme/./x.bin",
            "acme//x.bin",
            "acme/",
            "acme",
            "acme/sub/x.bin",
            "Acme/x.bin",
            "acme/.hidden",
            "acme/x\u{0}.bin",
            "targets/x.bin",
            "root/x.bin",
            "ac_me/x.bin",
            "acme/x y",
            "acme/x%2f",
            "",
        ] {
            assert!(TargetPath::new(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn serde_checks_on_the_way_in() {
        let t: TargetPath = serde_json::from_str("\"acme/pump-2.0.0.bin\"").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"acme/pump-2.0.0.bin\""
        );
        let m: ManufacturerName = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"acme\"");
        let e = serde_json::from_str::<TargetPath>("\"acme/../x.bin\"").unwrap_err();
        assert!(e.to_string().contains("acme/../x.bin"), "{e}");
        assert!(serde_json::from_str::<ManufacturerName>("\"Acme\"").is_err());
    }

    proptest! {
        /// Whatever we accept, tough accepts unchanged.
        #[test]
        fn accepted_names_agree_with_tough(s in "\\PC{0,40}") {
            if let Ok(t) = TargetPath::new(&s) {
                let tn = tough::TargetName::new(s.clone());
                prop_assert!(tn.is_ok());
                let tn = tn.unwrap();
                prop_assert_eq!(tn.raw(), tn.resolved());
                prop_assert_eq!(t.to_string(), s);
            }
        }

        /// Names built from a path-ish alphabet: if tough would rewrite or
        /// refuse it, we refuse it.
        #[test]
        fn tough_rewrites_are_refused(s in "[a-z./\\\\-]{0,16}") {
            let rewritten = match tough::TargetName::new(s.clone()) {
                Ok(tn) => tn.raw() != tn.resolved(),
                Err(_) => true,
            };
            if rewritten {
                prop_assert!(TargetPath::new(&s).is_err());
            }
        }

        /// A manufacturer name never holds more than `a-z 0-9 -`, so it is
        /// safe as a URL and directory segment.
        #[test]
        fn manufacturer_names_hold_only_safe_chars(s in "\\PC{0,80}") {
            if let Ok(m) = ManufacturerName::new(s.as_str()) {
                prop_assert!(m.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            }
        }

        /// Valid parts always produce a valid path that round-trips.
        #[test]
        fn valid_parts_round_trip(m in "[a-z0-9][a-z0-9-]{0,20}", f in "[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,30}") {
            prop_assume!(!matches!(m.as_str(), "root" | "targets" | "snapshot" | "timestamp"));
            let s = format!("{m}/{f}");
            let t = TargetPath::new(&s);
            prop_assert!(t.is_ok(), "{} refused", s);
            let t = t.unwrap();
            prop_assert_eq!(t.to_string(), s);
        }

        /// Any string containing `..` as a segment, a backslash or a leading
        /// slash is refused.
        #[test]
        fn dangerous_shapes_refused(a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
            let dotdot = format!("{a}/../{b}");
            let dotdot_tail = format!("{a}/..");
            let backslash = format!("{a}\\{b}");
            let absolute = format!("/{a}/{b}");
            for s in [dotdot, dotdot_tail, backslash, absolute] {
                prop_assert!(TargetPath::new(&s).is_err());
            }
        }
    }
}
