//! A manufacturer's release, made with `tuf-repo` and published as the OTA
//! server would, reaches a device as an offer; the device's own check
//! (`wardgate_protocol::verify_offer`, DESIGN "Devices verify too") accepts
//! exactly that and refuses any change a compromised gateway could make.
//!
//! This pins the contract between two crates written apart: the `custom`
//! firmware fields and signature format `tuf-repo` writes are the ones the
//! device-side check reads.

use std::path::Path;

use chrono::Utc;
use tuf_repo::firmware::FirmwareMeta;
use tuf_repo::repo::init::{init, OneKeyPerRole};
use tuf_repo::repo::release::{release, ReleaseRequest};
use tuf_repo::{Expiries, ManufacturerName, RepoDir, SigningKey};
use wardgate_protocol::message::OtaOffer;
use wardgate_protocol::verify_offer;
use wardgate_tests::hash::sha256_hex;

const HW: &str = "acme-pump-p7";

struct Release {
    offer: OtaOffer,
    image: Vec<u8>,
    acme: SigningKey,
    other: SigningKey,
}

/// Operator makes a repository and delegates `acme-medical/*`; the
/// manufacturer signs `pump-fw-2.1.0.bin`; the gateway turns the signed role
/// into an offer.
async fn signed_release(dir: &Path) -> Release {
    let repo = RepoDir::new(dir.join("repo"));
    let roles = OneKeyPerRole::generate();
    let acme = SigningKey::generate();
    let other = SigningKey::generate();
    let expiries = Expiries::default();
    init(&repo, &roles.config(expiries), &roles.signers())
        .await
        .expect("init");
    let m = ManufacturerName::new("acme-medical").expect("name");
    roles
        .delegate_to(&repo, &m, &acme, &expiries)
        .await
        .expect("enrol and delegate");

    let image: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let image_path = dir.join("pump-fw-2.1.0.bin");
    std::fs::write(&image_path, &image).expect("image");
    let bundle = release(
        &repo,
        &ReleaseRequest {
            manufacturer: m,
            target: "acme-medical/pump-fw-2.1.0.bin".into(),
            image: image_path,
            firmware: FirmwareMeta::new(
                vec![HW.into()],
                "2.1.0".parse().expect("semver"),
                Some("2.0.0".parse().expect("semver")),
                Some("fixes occlusion alarm latency".into()),
            )
            .expect("firmware meta"),
            expiry: expiries.delegated,
        },
        std::slice::from_ref(&acme),
        &dir.join("bundle"),
    )
    .await
    .expect("release");
    let offer = OtaOffer {
        schema: 1,
        seq: 1,
        ts: Utc::now(),
        campaign_id: "c-1".into(),
        target_name: "acme-medical/pump-fw-2.1.0.bin".into(),
        version: "2.1.0".into(),
        length: image.len() as u64,
        sha256: sha256_hex(&image),
        hardware_id: HW.into(),
        download_url: "https://127.0.0.1:8443/ota/acme-medical/pump-fw-2.1.0.bin".into(),
        targets_metadata: std::fs::read_to_string(&bundle.role_metadata).expect("role metadata"),
    };
    Release {
        offer,
        image,
        acme,
        other,
    }
}

// control: firmware-integrity
#[tokio::test]
async fn device_accepts_the_manufacturers_release_and_refuses_every_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = signed_release(dir.path()).await;
    let key = r.acme.verifying_key();
    let installed: semver::Version = "2.0.3".parse().expect("semver");
    let now = Utc::now();

    // The genuine offer verifies, and so does the genuine image.
    let ok = verify_offer(&r.offer, &key, HW, &installed, now).expect("genuine offer");
    assert_eq!(ok.version.to_string(), "2.1.0");
    ok.check_image(&r.image).expect("genuine image");

    // A gateway that swaps a byte of the image is caught after download.
    let mut bad_image = r.image.clone();
    bad_image[100] ^= 1;
    assert!(ok.check_image(&bad_image).is_err());

    let refused = |offer: &OtaOffer, key, hw: &str, installed: &str| {
        let installed: semver::Version = installed.parse().expect("semver");
        verify_offer(offer, key, hw, &installed, now)
            .expect_err("must be refused")
            .to_string()
    };
    // Another manufacturer's key (a device built by someone else).
    let other_key = r.other.verifying_key();
    let msg = refused(&r.offer, &other_key, HW, "2.0.3");
    assert!(msg.contains("not signed"), "{msg}");
    // Wrong hardware.
    let msg = refused(&r.offer, &key, "acme-monitor-m1", "2.0.3");
    assert!(msg.contains("hardware"), "{msg}");
    // Not newer than what is installed (downgrade or reinstall).
    let msg = refused(&r.offer, &key, HW, "2.1.0");
    assert!(msg.contains("not newer"), "{msg}");
    // Below the signed min_version.
    let msg = refused(&r.offer, &key, HW, "1.9.0");
    assert!(msg.contains("min_version"), "{msg}");

    // The gateway edits the offer fields around the signed metadata.
    let mut o = r.offer.clone();
    o.sha256 = sha256_hex(b"foreign firmware");
    assert!(refused(&o, &key, HW, "2.0.3").contains("SHA-256"));
    let mut o = r.offer.clone();
    o.length += 1;
    assert!(refused(&o, &key, HW, "2.0.3").contains("length"));
    let mut o = r.offer.clone();
    o.version = "9.9.9".into();
    assert!(refused(&o, &key, HW, "2.0.3").contains("version"));

    // The gateway edits the signed metadata itself: the signature breaks.
    let mut o = r.offer.clone();
    o.targets_metadata = o.targets_metadata.replacen("2.1.0", "2.1.1", 1);
    assert_ne!(o.targets_metadata, r.offer.targets_metadata);
    assert!(refused(&o, &key, HW, "2.0.3").contains("not signed"));
    let mut o = r.offer.clone();
    o.targets_metadata.truncate(o.targets_metadata.len() / 2);
    assert!(refused(&o, &key, HW, "2.0.3").contains("not JSON"));
}
