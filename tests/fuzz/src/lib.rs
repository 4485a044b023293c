//! Fixtures shared by the fuzz targets in `fuzz_targets/` and by
//! `examples/make_seeds.rs`, which writes the seed corpus.
//!
//! Every key here comes from a fixed seed, so metadata the seed generator
//! signed stays valid for the repository a target builds at start-up: the
//! targets trust the same keys, even though each build of the repository
//! has its own expiry times. Nothing here is secret; these keys exist only
//! for fuzzing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tuf_repo::firmware::FirmwareMeta;
use tuf_repo::repo::init::{init, OneKeyPerRole};
use tuf_repo::repo::release::{release, ReleaseRequest, UploadBundle};
use tuf_repo::{Expiries, ManufacturerName, RepoDir, SigningKey};

/// The manufacturer every upload and offer comes from.
pub const MANUFACTURER: &str = "acme-medical";
/// The target the upload route names.
pub const TARGET: &str = "acme-medical/pump-fw-2.1.0.bin";
/// The hardware model of the device that checks offers.
pub const HARDWARE_ID: &str = "acme-pump-v2";
/// The image the seed release ships.
pub const IMAGE: &[u8] = b"wardgate fuzz firmware image 2.1.0\n";

/// The fixed key of role number `n` (1 root, 2 targets, 3 snapshot,
/// 4 timestamp, 5 manufacturer).
#[must_use]
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

/// The manufacturer's key.
#[must_use]
pub fn manufacturer_key() -> SigningKey {
    key(5)
}

/// The manufacturer's role name.
///
/// # Panics
/// Never: the name is a valid constant.
#[must_use]
pub fn manufacturer() -> ManufacturerName {
    ManufacturerName::new(MANUFACTURER).expect("valid manufacturer name")
}

/// Long expiries, so seeds signed today stay unexpired for years.
#[must_use]
pub fn expiries() -> Expiries {
    let ten_years = Duration::from_secs(10 * 365 * 86_400);
    Expiries {
        root: ten_years,
        targets: ten_years,
        delegated: ten_years,
        snapshot: ten_years,
        timestamp: ten_years,
    }
}

fn roles() -> OneKeyPerRole {
    OneKeyPerRole {
        root: key(1),
        targets: key(2),
        snapshot: key(3),
        timestamp: key(4),
    }
}

/// A repository in `dir/repo` as the OTA server holds it before the
/// manufacturer's first release: init, the manufacturer delegated and
/// enrolled, snapshot and timestamp signed.
///
/// # Errors
/// As `tuf-repo`'s authoring functions.
pub async fn server_repo(dir: &Path) -> tuf_repo::Result<RepoDir> {
    let repo = RepoDir::new(dir.join("repo"));
    let roles = roles();
    let exp = expiries();
    init(&repo, &roles.config(exp), &roles.signers()).await?;
    roles
        .delegate_to(&repo, &manufacturer(), &manufacturer_key(), &exp)
        .await?;
    tuf_repo::repo::online::snapshot(&repo, &[key(3)], exp.snapshot).await?;
    tuf_repo::refresh_timestamp(&repo, &[key(4)], exp.timestamp).await?;
    Ok(repo)
}

/// The manufacturer's release of [`IMAGE`] as 2.1.0 against `repo`: the
/// upload bundle `tuf-repo release` writes (into `dir/bundle`).
///
/// # Errors
/// Writing the image, or as [`tuf_repo::repo::release::release`].
pub async fn seed_release(repo: &RepoDir, dir: &Path) -> Result<UploadBundle, BoxError> {
    let image = dir.join("pump-fw-2.1.0.bin");
    std::fs::write(&image, IMAGE)?;
    let firmware = FirmwareMeta::new(
        vec![HARDWARE_ID.to_owned()],
        semver::Version::new(2, 1, 0),
        Some(semver::Version::new(1, 0, 0)),
        Some("fuzz seed".to_owned()),
    )?;
    let req = ReleaseRequest {
        manufacturer: manufacturer(),
        target: TARGET.to_owned(),
        image,
        firmware,
        expiry: expiries().delegated,
    };
    Ok(release(repo, &req, &[manufacturer_key()], &dir.join("bundle")).await?)
}

/// Any error of the fixtures (they run once, before fuzzing starts).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Replace the signatures of TUF metadata `meta` with one signature by
/// `key` over the canonical JSON of its `signed` part, as a holder of the
/// key would: lets a target reach the checks behind the signature check
/// with the fuzzer's content. `None` if `meta` is not a JSON object with
/// a canonicalisable `signed`.
#[must_use]
pub fn resign(meta: &[u8], key: &SigningKey) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(meta).ok()?;
    let signed = value.get("signed")?;
    let message = wardgate_protocol::offer::canonical_json(signed).ok()?;
    let sig = hex::encode(key.sign_bytes(&message));
    let obj = value.as_object_mut()?;
    obj.insert(
        "signatures".to_owned(),
        serde_json::json!([{"keyid": key.key_id(), "sig": sig}]),
    );
    serde_json::to_vec(&value).ok()
}

/// A fresh temporary directory for a target's fixture (kept for the
/// process's life).
///
/// # Panics
/// If no temporary directory can be made: the target cannot run.
#[must_use]
pub fn fixture_dir() -> PathBuf {
    tempfile::Builder::new()
        .prefix("wardgate-fuzz-")
        .tempdir()
        .expect("temporary directory for the fuzz fixture")
        .keep()
}
