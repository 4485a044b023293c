//! FHIR resource ids for the gateway's `Device` and `Observation` resources.
//!
//! A FHIR id is 1 to 64 characters from `A-Z a-z 0-9 - .`. The upstream
//! server keys resources by id, so two different inputs must never get the
//! same id: otherwise one patient's vitals overwrite another's. The mapping
//! below is injective and every id it makes is a valid FHIR id.
//!
//! **Device part.** A [`DeviceId`] is 1 to 64 characters from
//! `A-Z a-z 0-9 - _` and never contains `.`. Replacing each `_` by `.`
//! (written `esc(d)`) is therefore a bijection from device ids onto
//! strings over the FHIR id alphabet, of the same length: `pump_01` becomes
//! `pump.01`, `pump-01` stays `pump-01`, and `esc(d)` can be turned back
//! into `d`. The `Device` id of `d` is `esc(d)` (at most 64 characters).
//!
//! **Observation ids, short form.** For device `d`, message `seq` `n` and a
//! vital name `v` from `[A-Za-z0-9.]+` (the renderer's names: `hr`, `bp`,
//! ...), the id is `esc(d)-n-v` with `n` in decimal, when that fits in 64
//! characters. Neither `v` nor a decimal number contains `-`, so the text
//! after the last `-` is `v`, the text between the last two `-` is `n` (in
//! its one canonical decimal form) and the rest is `esc(d)`, hence `d`:
//! distinct inputs give distinct short ids.
//!
//! **Observation ids, hashed form.** Otherwise (a long device id with a
//! large `seq`, or a vital name outside `[A-Za-z0-9.]+`) the id is
//! `sha256.` followed by the first 56 hex digits of the SHA-256 of the
//! prefix-free encoding `len(d) ‖ d ‖ n (8 bytes, big-endian) ‖ v`, 63
//! characters in all. A hashed id contains no `-` while every short id does,
//! so the two forms never meet; two hashed ids are equal only if 224 bits of
//! SHA-256 collide, which is not expected to happen (about 2^112 ids would be
//! needed for an even chance).
//!
//! FHIR ids are case-sensitive and so are device ids: `Pump-01` and
//! `pump-01` are two devices and get two ids.

use std::fmt;

use serde::{Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use wardgate_protocol::DeviceId;

/// Longest FHIR id.
pub const MAX_LEN: usize = 64;
/// Prefix of hashed observation ids.
pub const HASHED_PREFIX: &str = "sha256.";
/// Hex digits of the digest kept in a hashed id.
const HASH_HEX_DIGITS: usize = 56;

/// A FHIR resource id made by the injective mapping of this module.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FhirId(String);

impl FhirId {
    /// The id of the FHIR `Device` resource of `device`: `esc(device)`.
    #[must_use]
    pub fn device(device: &DeviceId) -> Self {
        Self(escape(device))
    }

    /// The id of the `Observation` of vital `vital` in message `seq` of
    /// `device`: `esc(device)-seq-vital`, or the hashed form if that is
    /// longer than 64 characters or `vital` is not from `[A-Za-z0-9.]+`.
    #[must_use]
    pub fn observation(device: &DeviceId, seq: u64, vital: &str) -> Self {
        let vital_ok = !vital.is_empty()
            && vital
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.');
        let short = format!("{}-{seq}-{vital}", escape(device));
        if vital_ok && short.len() <= MAX_LEN {
            Self(short)
        } else {
            Self(hashed(device, seq, vital))
        }
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FhirId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for FhirId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Whether `id` is a valid FHIR id: `[A-Za-z0-9\-\.]{1,64}`.
#[must_use]
pub fn is_valid(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `esc(d)`: each `_` of the device id as `.`.
fn escape(device: &DeviceId) -> String {
    device.as_str().replace('_', ".")
}

fn hashed(device: &DeviceId, seq: u64, vital: &str) -> String {
    let d = device.as_str().as_bytes();
    let mut hasher = Sha256::new();
    // A device id is at most 64 bytes, so its length fits one byte.
    hasher.update([u8::try_from(d.len()).unwrap_or(u8::MAX)]);
    hasher.update(d);
    hasher.update(seq.to_be_bytes());
    hasher.update(vital.as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!("{HASHED_PREFIX}{}", &digest[..HASH_HEX_DIGITS])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::id;
    use proptest::prelude::*;

    #[test]
    fn underscore_and_hyphen_ids_stay_apart() {
        let (a, b) = (id("pump_01"), id("pump-01"));
        assert_ne!(FhirId::device(&a), FhirId::device(&b));
        assert_ne!(
            FhirId::observation(&a, 7, "hr"),
            FhirId::observation(&b, 7, "hr")
        );
        assert_eq!(FhirId::device(&a).as_str(), "pump.01");
        assert_eq!(FhirId::observation(&a, 7, "hr").as_str(), "pump.01-7-hr");
        assert_eq!(FhirId::observation(&b, 7, "hr").as_str(), "pump-01-7-hr");
    }

    #[test]
    fn ids_that_do_not_fit_are_hashed_and_valid() {
        let long = id(&format!("a{}", "_b-".repeat(21)));
        let o = FhirId::observation(&long, u64::MAX, "spo2");
        assert!(o.as_str().starts_with(HASHED_PREFIX), "{o}");
        assert!(is_valid(o.as_str()), "{o}");
        assert_ne!(o, FhirId::observation(&long, u64::MAX - 1, "spo2"));
        assert!(is_valid(FhirId::device(&long).as_str()));
        // A vital name with a '-' would make the short form ambiguous.
        assert!(FhirId::observation(&id("d"), 1, "a-b")
            .as_str()
            .starts_with(HASHED_PREFIX));
    }

    fn device_ids() -> impl Strategy<Value = DeviceId> {
        "[A-Za-z0-9][A-Za-z0-9_-]{0,63}".prop_map(|s| DeviceId::parse(&s).unwrap())
    }

    fn vitals() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["hr", "spo2", "rr", "temp", "sys", "dia", "inf", "bp"])
                .prop_map(str::to_owned),
            "[A-Za-z0-9._-]{0,6}",
        ]
    }

    proptest! {
        /// Distinct (device, seq, vital) give distinct, valid ids; so do
        /// distinct devices.
        #[test]
        fn observation_ids_are_injective_and_valid(
            d1 in device_ids(), n1 in any::<u64>(), v1 in vitals(),
            d2 in device_ids(), n2 in any::<u64>(), v2 in vitals(),
        ) {
            let (a, b) = (FhirId::observation(&d1, n1, &v1), FhirId::observation(&d2, n2, &v2));
            prop_assert!(is_valid(a.as_str()), "{}", a);
            prop_assert!(is_valid(b.as_str()), "{}", b);
            prop_assert_eq!((d1.clone(), n1, v1) == (d2.clone(), n2, v2), a == b);
            prop_assert!(is_valid(FhirId::device(&d1).as_str()));
            prop_assert_eq!(d1 == d2, FhirId::device(&d1) == FhirId::device(&d2));
        }

        /// Ids that differ only where `_` and `-` differ (the case that
        /// collided before) stay distinct.
        #[test]
        fn swapping_underscore_and_hyphen_changes_the_id(
            d in "[A-Za-z0-9][A-Za-z0-9_-]{0,40}", n in any::<u64>(), v in vitals(),
        ) {
            let swapped: String = d.chars().map(|c| match c { '_' => '-', '-' => '_', c => c }).collect();
            let (a, b) = (id(&d), id(&swapped));
            prop_assert_eq!(a == b, FhirId::observation(&a, n, &v) == FhirId::observation(&b, n, &v));
        }
    }
}
