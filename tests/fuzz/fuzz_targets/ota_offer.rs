//! The device-side firmware offer check (`verify_offer`, then
//! `check_image` and the piecewise `image_check`) on offers from the
//! network, against a fixed trusted manufacturer key, hardware id
//! `acme-pump-v2`, installed version 1.5.0 and a fixed clock (2030-01-01),
//! so every run judges an input the same way.
//!
//! The first input byte's bit 0 picks the mode: 0 verifies the offer as
//! received; 1 first re-signs its `targets_metadata` with the trusted key
//! (as the manufacturer would sign whatever it signs), so the checks after
//! the signature (type, expiry, listing, length, hash, hardware, versions)
//! see the fuzzer's content. The rest of the input is the offer JSON. An
//! offer that passes is held to what verification promises, and the
//! image check is run on the input itself, whole and in pieces.

#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use semver::Version;
use sha2::{Digest, Sha256};
use wardgate_fuzz::{manufacturer_key, resign, HARDWARE_ID};
use wardgate_protocol::{verify_offer, OtaOffer};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(mut offer) = OtaOffer::from_json(rest) else {
        return;
    };
    let key = manufacturer_key();
    if selector & 1 == 1 {
        let Some(meta) = resign(offer.targets_metadata.as_bytes(), &key) else {
            return;
        };
        let Ok(meta) = String::from_utf8(meta) else {
            return;
        };
        offer.targets_metadata = meta;
    }
    let installed = Version::new(1, 5, 0);
    let now: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().expect("fixed clock");
    let Ok(verified) = verify_offer(&offer, &key.verifying_key(), HARDWARE_ID, &installed, now)
    else {
        return;
    };
    assert!(verified.version > installed, "accepted an older version");
    assert_eq!(verified.length, offer.length);
    assert_eq!(verified.target_name, offer.target_name);
    assert_eq!(offer.hardware_id, HARDWARE_ID);
    assert_eq!(verified.sha256, offer.sha256.to_ascii_lowercase());

    let image = rest;
    let whole = verified.check_image(image);
    let genuine = image.len() as u64 == verified.length
        && hex::encode(Sha256::digest(image)) == verified.sha256;
    assert_eq!(
        whole.is_ok(),
        genuine,
        "check_image disagrees with length and hash"
    );
    let mut pieces = verified.image_check();
    for piece in image.chunks(usize::from(selector >> 1).max(1)) {
        pieces.update(piece);
    }
    assert_eq!(pieces.bytes_seen(), image.len() as u64);
    assert_eq!(
        pieces.finish().map_err(|e| e.to_string()),
        whole.map_err(|e| e.to_string()),
        "the piecewise image check disagrees with the whole one"
    );
});
