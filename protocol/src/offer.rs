//! The device-side check of a firmware offer (Uptane-style partial
//! verification; `docs/architecture.md`, "Devices verify too").
//!
//! An [`OtaOffer`] carries the manufacturer's signed delegated targets
//! metadata (TUF JSON). [`verify_offer`] checks, without trusting the
//! gateway: an Ed25519 signature by the manufacturer key the device was
//! built with over the canonical JSON of `signed`, that the metadata has not
//! expired, that it lists the offered target with the offered length and
//! SHA-256, that the target is built for this hardware id, and that its
//! version is newer than the installed one (and the installed one is at
//! least the target's `min_version`). [`VerifiedOffer::check_image`] then
//! checks the downloaded bytes, or [`VerifiedOffer::image_check`] the same
//! piece by piece for an image too large to hold in memory.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use semver::Version;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ProtocolError;
use crate::message::OtaOffer;

/// An offer that passed [`verify_offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOffer {
    /// TUF target name.
    pub target_name: String,
    /// Version to install.
    pub version: Version,
    /// Expected image length.
    pub length: u64,
    /// Expected image SHA-256 (lowercase hex).
    pub sha256: String,
}

fn refuse(reason: impl Into<String>) -> ProtocolError {
    ProtocolError::Offer {
        reason: reason.into(),
    }
}

/// Canonical JSON (OLPC, as TUF signs it) of `value`.
///
/// # Errors
/// [`ProtocolError::Offer`] if the value cannot be serialised canonically
/// (e.g. it holds floating-point numbers).
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, ProtocolError> {
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
    value
        .serialize(&mut ser)
        .map_err(|e| refuse(format!("metadata cannot be canonicalised: {e}")))?;
    Ok(buf)
}

/// Verify `offer` on the device.
///
/// # Errors
/// [`ProtocolError::Offer`] naming the first check that failed.
pub fn verify_offer(
    offer: &OtaOffer,
    manufacturer_key: &VerifyingKey,
    hardware_id: &str,
    installed: &Version,
    now: DateTime<Utc>,
) -> Result<VerifiedOffer, ProtocolError> {
    let meta: Value = serde_json::from_str(&offer.targets_metadata)
        .map_err(|e| refuse(format!("targets metadata is not JSON: {e}")))?;
    let signed = meta
        .get("signed")
        .ok_or_else(|| refuse("metadata has no `signed`"))?;
    let signatures = meta
        .get("signatures")
        .and_then(Value::as_array)
        .ok_or_else(|| refuse("metadata has no `signatures`"))?;
    let message = canonical_json(signed)?;
    let signed_by_manufacturer = signatures.iter().any(|s| {
        s.get("sig")
            .and_then(Value::as_str)
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| Signature::from_slice(&b).ok())
            .is_some_and(|sig| manufacturer_key.verify_strict(&message, &sig).is_ok())
    });
    if !signed_by_manufacturer {
        return Err(refuse(
            "metadata is not signed by this device's manufacturer key",
        ));
    }
    if signed.get("_type").and_then(Value::as_str) != Some("targets") {
        return Err(refuse("metadata is not a targets role"));
    }
    let expires = signed
        .get("expires")
        .and_then(Value::as_str)
        .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
        .ok_or_else(|| refuse("metadata has no valid `expires`"))?;
    if expires <= now {
        return Err(refuse(format!("metadata expired at {expires}")));
    }
    let target = signed
        .get("targets")
        .and_then(|t| t.get(&offer.target_name))
        .ok_or_else(|| {
            refuse(format!(
                "signed metadata does not list {}",
                offer.target_name
            ))
        })?;
    let length = target.get("length").and_then(Value::as_u64);
    if length != Some(offer.length) {
        return Err(refuse(format!(
            "offered length {} differs from the signed length {length:?}",
            offer.length
        )));
    }
    let sha = target
        .get("hashes")
        .and_then(|h| h.get("sha256"))
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    if sha.as_deref() != Some(offer.sha256.to_ascii_lowercase().as_str()) {
        return Err(refuse("offered SHA-256 differs from the signed one"));
    }
    let custom = target
        .get("custom")
        .ok_or_else(|| refuse("target has no firmware `custom` data"))?;
    let for_this_hardware = custom
        .get("hardware_ids")
        .and_then(Value::as_array)
        .is_some_and(|ids| ids.iter().any(|h| h.as_str() == Some(hardware_id)));
    if !for_this_hardware || offer.hardware_id != hardware_id {
        return Err(refuse(format!(
            "target is not built for hardware {hardware_id}"
        )));
    }
    let version = custom
        .get("version")
        .and_then(Value::as_str)
        .and_then(|v| Version::parse(v).ok())
        .ok_or_else(|| refuse("target has no valid semver `version`"))?;
    if Version::parse(&offer.version).ok().as_ref() != Some(&version) {
        return Err(refuse("offered version differs from the signed one"));
    }
    if &version <= installed {
        return Err(refuse(format!(
            "version {version} is not newer than installed {installed}"
        )));
    }
    if let Some(min) = custom.get("min_version").and_then(Value::as_str) {
        let min = Version::parse(min).map_err(|_| refuse("target has an invalid `min_version`"))?;
        if installed < &min {
            return Err(refuse(format!(
                "installed {installed} is below the required min_version {min}"
            )));
        }
    }
    Ok(VerifiedOffer {
        target_name: offer.target_name.clone(),
        version,
        length: offer.length,
        sha256: offer.sha256.to_ascii_lowercase(),
    })
}

impl VerifiedOffer {
    /// Check a downloaded image against the signed length and SHA-256.
    ///
    /// # Errors
    /// [`ProtocolError::Offer`] on a length or hash mismatch.
    pub fn check_image(&self, image: &[u8]) -> Result<(), ProtocolError> {
        let mut check = self.image_check();
        check.update(image);
        check.finish()
    }

    /// The same check as [`VerifiedOffer::check_image`], fed piece by piece,
    /// so a device can check an image in its flash slot without holding it
    /// in memory.
    #[must_use]
    pub fn image_check(&self) -> ImageCheck {
        ImageCheck {
            length: self.length,
            sha256: self.sha256.clone(),
            seen: 0,
            hasher: Sha256::new(),
        }
    }
}

/// An image check in progress (see [`VerifiedOffer::image_check`]): feed the
/// image's bytes in order with [`ImageCheck::update`], then
/// [`ImageCheck::finish`].
#[derive(Debug, Clone)]
pub struct ImageCheck {
    length: u64,
    sha256: String,
    seen: u64,
    hasher: Sha256,
}

impl ImageCheck {
    /// Feed the next bytes of the image.
    pub fn update(&mut self, bytes: &[u8]) {
        self.seen = self.seen.saturating_add(bytes.len() as u64);
        self.hasher.update(bytes);
    }

    /// Bytes fed so far.
    #[must_use]
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    /// Compare what was fed with the signed length and SHA-256.
    ///
    /// # Errors
    /// [`ProtocolError::Offer`] on a length or hash mismatch.
    pub fn finish(self) -> Result<(), ProtocolError> {
        if self.seen != self.length {
            return Err(refuse(format!(
                "image is {} bytes, signed length is {}",
                self.seen, self.length
            )));
        }
        if hex::encode(self.hasher.finalize()) != self.sha256 {
            return Err(refuse("image SHA-256 does not match the signed hash"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    const HW: &str = "acme-pump-v2";

    fn metadata(key: &SigningKey, image: &[u8], version: &str, expires: &str) -> String {
        let signed = serde_json::json!({
            "_type": "targets",
            "spec_version": "1.0.0",
            "version": 3,
            "expires": expires,
            "targets": {
                "acme/pump-fw.bin": {
                    "length": image.len(),
                    "hashes": {"sha256": hex::encode(Sha256::digest(image))},
                    "custom": {"hardware_ids": [HW], "version": version, "min_version": "1.0.0"}
                }
            }
        });
        let sig = key.sign(&canonical_json(&signed).unwrap());
        serde_json::json!({
            "signed": signed,
            "signatures": [{"keyid": "00", "sig": hex::encode(sig.to_bytes())}]
        })
        .to_string()
    }

    fn offer(meta: String, image: &[u8], version: &str) -> OtaOffer {
        OtaOffer {
            schema: 1,
            seq: 1,
            ts: Utc::now(),
            campaign_id: "c1".into(),
            target_name: "acme/pump-fw.bin".into(),
            version: version.into(),
            length: image.len() as u64,
            sha256: hex::encode(Sha256::digest(image)),
            hardware_id: HW.into(),
            download_url: "https://gw.local/fw".into(),
            targets_metadata: meta,
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// A genuine offer of `image` as 2.0.0, signed by `key(1)` and verified
    /// against an installed 1.5.0.
    fn verified_2_0_0(image: &[u8]) -> VerifiedOffer {
        let k = key(1);
        let o = offer(
            metadata(&k, image, "2.0.0", "2099-01-01T00:00:00Z"),
            image,
            "2.0.0",
        );
        verify_offer(
            &o,
            &k.verifying_key(),
            HW,
            &Version::new(1, 5, 0),
            Utc::now(),
        )
        .unwrap()
    }

    #[test]
    fn accepts_a_genuine_newer_offer_and_checks_the_image() {
        let image = b"firmware image v2".to_vec();
        let v = verified_2_0_0(&image);
        assert_eq!(v.version, Version::new(2, 0, 0));
        v.check_image(&image).unwrap();
        assert!(v.check_image(b"firmware image v3").is_err());
        assert!(v.check_image(b"short").is_err());
    }

    #[test]
    fn image_check_in_pieces_agrees_with_the_whole_image_check() {
        let image: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let v = verified_2_0_0(&image);
        let mut c = v.image_check();
        for piece in image.chunks(777) {
            c.update(piece);
        }
        assert_eq!(c.bytes_seen(), image.len() as u64);
        c.finish().unwrap();

        let mut flipped = image.clone();
        flipped[5000] ^= 0x80;
        let mut c = v.image_check();
        for piece in flipped.chunks(1024) {
            c.update(piece);
        }
        assert_eq!(
            c.finish().unwrap_err().to_string(),
            v.check_image(&flipped).unwrap_err().to_string()
        );

        let mut c = v.image_check();
        c.update(&image[..image.len() - 1]);
        assert!(c
            .finish()
            .unwrap_err()
            .to_string()
            .contains("signed length"));
    }

    #[test]
    fn refuses_foreign_tampered_older_expired_and_wrong_hardware() {
        let k = key(1);
        let image = b"firmware image v2".to_vec();
        let good = metadata(&k, &image, "2.0.0", "2099-01-01T00:00:00Z");
        let installed = Version::new(1, 5, 0);
        let check = |o: &OtaOffer, key: &SigningKey, hw: &str, inst: &Version| {
            verify_offer(o, &key.verifying_key(), hw, inst, Utc::now())
                .unwrap_err()
                .to_string()
        };
        // Signed by another key (a compromised gateway's own key).
        let foreign = offer(
            metadata(&key(2), &image, "2.0.0", "2099-01-01T00:00:00Z"),
            &image,
            "2.0.0",
        );
        assert!(check(&foreign, &k, HW, &installed).contains("not signed"));
        // Metadata edited after signing.
        let tampered = offer(
            good.replace("\"length\":17", "\"length\":18"),
            &image,
            "2.0.0",
        );
        assert!(check(&tampered, &k, HW, &installed).contains("not signed"));
        // Offer fields that differ from the signed ones.
        let mut o = offer(good.clone(), &image, "2.0.0");
        o.length += 1;
        assert!(check(&o, &k, HW, &installed).contains("length"));
        let mut o = offer(good.clone(), &image, "2.0.0");
        o.sha256 = "00".repeat(32);
        assert!(check(&o, &k, HW, &installed).contains("SHA-256"));
        // Wrong hardware, older or equal version, below min_version, expired.
        let genuine = offer(good.clone(), &image, "2.0.0");
        for (hw, inst, refusal) in [
            ("other-hw", &installed, "hardware"),
            (HW, &Version::new(2, 0, 0), "not newer"),
            (HW, &Version::new(0, 9, 0), "min_version"),
        ] {
            assert!(check(&genuine, &k, hw, inst).contains(refusal), "{refusal}");
        }
        let old = offer(
            metadata(&k, &image, "2.0.0", "2001-01-01T00:00:00Z"),
            &image,
            "2.0.0",
        );
        assert!(check(&old, &k, HW, &installed).contains("expired"));
        assert!(
            check(&offer("{".into(), &image, "2.0.0"), &k, HW, &installed).contains("not JSON")
        );
    }
}
