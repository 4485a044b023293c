//! Names that arrive from the network, checked once at construction.
//!
//! A [`ManufacturerName`] is the name of a delegated targets role and the
//! first segment of every target path it may sign; a [`TargetPath`] is a
//! target name that `tough` would accept (no `..`, no leading `/`, no empty
//! segment) and that lives under exactly one manufacturer; a [`GatewayId`]
//! and a [`DeviceId`] are identifiers taken from certificates and reports.
//! The rest of the server only ever sees these types, so the checks cannot be
//! forgotten on some path.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {value:?} is not acceptable: {reason}")]
pub struct NameError {
    /// What kind of name it was.
    pub kind: &'static str,
    /// The refused input (truncated to 80 characters).
    pub value: String,
    /// Why it was refused.
    pub reason: &'static str,
}

fn refuse(kind: &'static str, value: &str, reason: &'static str) -> NameError {
    NameError {
        kind,
        value: value.chars().take(80).collect(),
        reason,
    }
}

/// A short identifier: 1..=64 characters of `[a-z0-9-_]`, starting with a
/// letter or digit.
fn check_ident(kind: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() || s.len() > 64 {
        return Err(refuse(kind, s, "must be 1 to 64 characters long"));
    }
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok {
        return Err(refuse(
            kind,
            s,
            "must start with a lowercase letter or digit",
        ));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(refuse(
            kind,
            s,
            "may only contain lowercase letters, digits, '-' and '_'",
        ));
    }
    Ok(())
}

fn no_extra(_: &str) -> Result<(), NameError> {
    Ok(())
}

/// Manufacturer names follow `tuf-repo`'s rule: no `_`, and never a
/// top-level role name.
fn manufacturer_extra(s: &str) -> Result<(), NameError> {
    const KIND: &str = "manufacturer name";
    if s.contains('_') {
        return Err(refuse(KIND, s, "may only contain a-z, 0-9 and '-'"));
    }
    if matches!(s, "root" | "targets" | "snapshot" | "timestamp") {
        return Err(refuse(KIND, s, "may not be a top-level TUF role name"));
    }
    Ok(())
}

macro_rules! ident_type {
    ($(#[$m:meta])* $name:ident, $kind:literal, $extra:path) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it.
            ///
            /// # Errors
            /// [`NameError`] when `s` is empty, too long or has characters
            /// outside `[a-z0-9-_]`.
            pub fn new(s: &str) -> Result<Self, NameError> {
                check_ident($kind, s)?;
                $extra(s)?;
                Ok(Self(s.to_owned()))
            }

            /// The checked name.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }
    };
}

ident_type!(
    /// A manufacturer: the name of its delegated targets role and the first
    /// segment of its target paths (`<manufacturer>/*`).
    ManufacturerName,
    "manufacturer name",
    manufacturer_extra
);
ident_type!(
    /// A ward gateway, as named in its client certificate
    /// (`urn:wardgate:gateway:<id>` or the CN).
    GatewayId,
    "gateway id",
    no_extra
);
ident_type!(
    /// A bedside device, as reported by its gateway.
    DeviceId,
    "device id",
    no_extra
);

/// A TUF target name of the form `<manufacturer>/<file>`, safe to use as a
/// URL path and accepted by `tough`'s `TargetName`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TargetPath {
    full: String,
    manufacturer: ManufacturerName,
}

impl TargetPath {
    /// Checks `s`: exactly `<manufacturer>/<file>` (`tuf-repo`'s rule), the
    /// file made of `[A-Za-z0-9._+-]`, not starting with `.`, at most 200
    /// bytes. The same rule `tough` applies (no path traversal),
    /// made stricter so the name is also safe in a URL and on disk.
    ///
    /// # Errors
    /// [`NameError`] naming the rule that failed.
    pub fn new(s: &str) -> Result<Self, NameError> {
        const KIND: &str = "target path";
        if s.is_empty() || s.len() > 255 {
            return Err(refuse(KIND, s, "must be 1 to 255 bytes long"));
        }
        let mut segments = s.split('/');
        let first = segments.next().unwrap_or_default();
        let manufacturer = ManufacturerName::new(first)
            .map_err(|_| refuse(KIND, s, "must start with a valid manufacturer name and '/'"))?;
        let (Some(seg), None) = (segments.next(), segments.next()) else {
            return Err(refuse(KIND, s, "must be exactly <manufacturer>/<file>"));
        };
        {
            if seg.is_empty() || seg.len() > 200 || seg.starts_with('.') {
                return Err(refuse(
                    KIND,
                    s,
                    "file name must be 1 to 200 bytes and not start with '.'",
                ));
            }
            if !seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
            {
                return Err(refuse(
                    KIND,
                    s,
                    "segments may only contain letters, digits, '.', '_', '-' and '+'",
                ));
            }
        }
        if tough::TargetName::new(s).is_err() {
            return Err(refuse(KIND, s, "is refused by tough's TargetName rule"));
        }
        Ok(Self {
            full: s.to_owned(),
            manufacturer,
        })
    }

    /// The whole target name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The file segment (after `<manufacturer>/`).
    #[must_use]
    pub fn file_name(&self) -> &str {
        self.full
            .split_once('/')
            .map_or(self.full.as_str(), |(_, f)| f)
    }

    /// The manufacturer the path belongs to (its first segment).
    #[must_use]
    pub fn manufacturer(&self) -> &ManufacturerName {
        &self.manufacturer
    }

    /// The URL path a python-tuf client asks for under `targets/` with
    /// consistent snapshots: `<dirs>/<sha256>.<file>`.
    #[must_use]
    pub fn consistent_basename_form(&self, sha256_hex: &str) -> String {
        match self.full.rsplit_once('/') {
            Some((dir, file)) => format!("{dir}/{sha256_hex}.{file}"),
            None => format!("{sha256_hex}.{}", self.full),
        }
    }

    /// The URL path a `tough` client asks for under `targets/` with
    /// consistent snapshots: `<sha256>.<whole name>`.
    #[must_use]
    pub fn consistent_prefix_form(&self, sha256_hex: &str) -> String {
        format!("{sha256_hex}.{}", self.full)
    }
}

impl TryFrom<String> for TargetPath {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::new(&s)
    }
}

impl From<TargetPath> for String {
    fn from(n: TargetPath) -> String {
        n.full
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// A request path under `targets/` resolved to the target it names and the
/// SHA-256 it asks for. Both consistent-snapshot spellings are understood:
/// `tough` puts the digest before the whole name, python-tuf before the last
/// segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRequest {
    /// The target name.
    pub target: TargetPath,
    /// Lower-case hex SHA-256 the client expects.
    pub sha256_hex: String,
}

fn split_digest(s: &str) -> Option<(&str, &str)> {
    let (digest, rest) = s.split_at_checked(64)?;
    let rest = rest.strip_prefix('.')?;
    digest
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        .then_some((digest, rest))
}

impl TargetRequest {
    /// Parses a path below `targets/`.
    ///
    /// # Errors
    /// [`NameError`] when the path carries no digest or names no valid target.
    pub fn parse(path: &str) -> Result<Self, NameError> {
        if let Some((digest, rest)) = split_digest(path) {
            return Ok(Self {
                target: TargetPath::new(rest)?,
                sha256_hex: digest.to_owned(),
            });
        }
        if let Some((dir, file)) = path.rsplit_once('/') {
            if let Some((digest, base)) = split_digest(file) {
                return Ok(Self {
                    target: TargetPath::new(&format!("{dir}/{base}"))?,
                    sha256_hex: digest.to_owned(),
                });
            }
        }
        Err(refuse(
            "target request",
            path,
            "must carry the SHA-256 prefix of a consistent snapshot",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn target_paths() {
        let t = TargetPath::new("acme/pump-fw-1.2.0.bin").unwrap();
        assert_eq!(t.manufacturer().as_str(), "acme");
        for bad in [
            "",
            "acme",
            "acme/",
            "/acme/x",
            "acme/../x",
            "acme/./x",
            "acme//x",
            "Acme/x",
            "acme/x y",
            "acme/x%2f",
            "acme/fw/x.bin",
            "acme/.hidden",
            "root/x.bin",
            "ac_me/x.bin",
        ] {
            assert!(TargetPath::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn both_consistent_spellings_resolve() {
        let h = "ab".repeat(32);
        let t = TargetPath::new("acme/pump.bin").unwrap();
        for form in [t.consistent_basename_form(&h), t.consistent_prefix_form(&h)] {
            let r = TargetRequest::parse(&form).unwrap();
            assert_eq!(r.target, t);
            assert_eq!(r.sha256_hex, h);
        }
        assert!(TargetRequest::parse("acme/pump.bin").is_err());
        assert!(TargetRequest::parse(&format!("{h}.../x")).is_err());
    }

    proptest! {
        #[test]
        fn target_request_never_panics_nor_escapes(s in "\\PC{0,200}") {
            if let Ok(r) = TargetRequest::parse(&s) {
                prop_assert!(!r.target.as_str().contains(".."));
                prop_assert!(!r.target.as_str().starts_with('/'));
            }
        }

        #[test]
        fn ident_accepts_only_safe_chars(s in "\\PC{0,80}") {
            if let Ok(m) = ManufacturerName::new(&s) {
                prop_assert!(m.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
            }
        }
    }
}
