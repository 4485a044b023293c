//! The library entry points the OTA server uses: upload check and publish
//! into a separate directory (for an atomic swap), and the cheap timestamp
//! refresh.

mod support;

use support::*;
use tuf_repo::repo::publish::{check_upload, publish, read_bundle};
use tuf_repo::{CheckedUpload, Error, PublishedVersion, RepoDir, RepoLocation};

use std::path::Path;

/// Publishes `checked` with the fixture's online keys into `out`.
async fn publish_into(
    f: &Fixture,
    checked: &CheckedUpload,
    out: &Path,
) -> tuf_repo::Result<PublishedVersion> {
    publish(
        &f.repo,
        checked,
        &f.online(),
        f.expiries.snapshot,
        f.expiries.timestamp,
        out,
    )
    .await
}

#[tokio::test]
async fn publish_writes_a_new_version_elsewhere_and_leaves_the_current_one_alone() {
    let f = Fixture::new().await;
    let before_ts = std::fs::read(f.repo.metadata_file("timestamp.json")).unwrap();
    let img = f.image("pump-fw-2.1.0.bin", 70_000, 3);
    let b = f
        .release_acme("pump-fw-2.1.0.bin", &img, "2.1.0", "acme-pump-v2")
        .await
        .unwrap();
    let up = read_bundle(&b.dir, &acme()).unwrap();
    let checked = check_upload(&f.repo, &up).await.unwrap();
    assert_eq!(checked.new_targets.len(), 1);
    assert_eq!(
        checked.new_targets[0].name.to_string(),
        "acme-medical/pump-fw-2.1.0.bin"
    );
    assert_eq!(checked.new_targets[0].firmware.version.to_string(), "2.1.0");

    let out = f.path("out");
    let p = publish_into(&f, &checked, &out).await.unwrap();
    assert_eq!(p.role.role, "acme-medical");
    // The current repository is untouched.
    assert_eq!(
        std::fs::read(f.repo.metadata_file("timestamp.json")).unwrap(),
        before_ts
    );
    assert!(f.state().delegated["acme-medical"]
        .signed
        .targets
        .is_empty());
    // The new one verifies and serves the image.
    let got = tuf_repo::verify::fetch_target(
        &RepoLocation::Dir(out.clone()),
        &f.trusted_root(),
        tough::FilesystemTransport,
        "acme-medical/pump-fw-2.1.0.bin",
    )
    .await
    .unwrap();
    assert_eq!(got, std::fs::read(&img).unwrap());
    // Publishing into a non-empty directory is refused.
    let e = publish_into(&f, &checked, &out).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidArgument {
                what: "output directory",
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn an_image_that_does_not_match_its_entry_is_refused() {
    let f = Fixture::new().await;
    let img = f.image("pump-fw-2.1.0.bin", 5000, 3);
    let b = f
        .release_acme("pump-fw-2.1.0.bin", &img, "2.1.0", "p")
        .await
        .unwrap();
    // Same length, one byte changed.
    let mut bytes = std::fs::read(&b.image).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&b.image, &bytes).unwrap();
    let e = f.refused(&read_bundle(&b.dir, &acme()).unwrap()).await;
    assert!(
        matches!(e, Error::ImageMismatch { what: "sha256", .. }),
        "{e}"
    );
    // Shorter.
    std::fs::write(&b.image, &bytes[..4000]).unwrap();
    let e = f.refused(&read_bundle(&b.dir, &acme()).unwrap()).await;
    assert!(
        matches!(e, Error::ImageMismatch { what: "length", .. }),
        "{e}"
    );
    // Missing.
    std::fs::remove_file(&b.image).unwrap();
    let e = f.refused(&read_bundle(&b.dir, &acme()).unwrap()).await;
    assert!(
        matches!(e, Error::InvalidArgument { what: "upload", .. }),
        "{e}"
    );
    f.verify().await.unwrap();
}

#[tokio::test]
async fn refresh_timestamp_only_touches_the_timestamp() {
    let f = Fixture::new().await;
    f.ship_acme("1.0.0", "p", 1).await;
    let snap = std::fs::read(f.repo.metadata_file("snapshot.json")).unwrap();
    let listing = |r: &RepoDir| {
        let mut v: Vec<_> = std::fs::read_dir(r.metadata_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let files = listing(&f.repo);
    let v0 = f.state().timestamp.unwrap().signed.version.get();
    let s = tuf_repo::refresh_timestamp(
        &f.repo,
        std::slice::from_ref(&f.timestamp),
        std::time::Duration::from_secs(600),
    )
    .await
    .unwrap();
    assert_eq!(s.version, v0 + 1);
    assert_eq!(
        std::fs::read(f.repo.metadata_file("snapshot.json")).unwrap(),
        snap
    );
    assert_eq!(listing(&f.repo), files, "no new metadata files");
    let report = f.verify().await.unwrap();
    let ts = report.roles.iter().find(|r| r.role == "timestamp").unwrap();
    assert_eq!(ts.version, v0 + 1);
    assert!(
        ts.expires
            <= jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(601))
                .unwrap()
    );
}

#[tokio::test]
async fn a_persistent_datastore_refuses_a_rolled_back_timestamp() {
    let f = Fixture::new().await;
    f.ship_acme("1.0.0", "p", 1).await;
    let store = f.path("store");
    std::fs::create_dir_all(&store).unwrap();
    let load = |store: Option<std::path::PathBuf>| {
        let loc = RepoLocation::Dir(f.repo.path().to_owned());
        let root = f.trusted_root();
        async move {
            tuf_repo::verify::load_repository(
                &loc,
                &root,
                tough::FilesystemTransport,
                store.as_deref(),
            )
            .await
        }
    };
    let old_ts = std::fs::read(f.repo.metadata_file("timestamp.json")).unwrap();
    f.timestamp_with(std::slice::from_ref(&f.timestamp))
        .await
        .unwrap();
    let r = load(Some(store.clone())).await.unwrap();
    let seen = r.timestamp().signed.version.get();
    // A mirror serves the older (still validly signed) timestamp again.
    std::fs::write(f.repo.metadata_file("timestamp.json"), &old_ts).unwrap();
    let e = load(Some(store)).await.unwrap_err();
    assert!(matches!(e, Error::Verify { .. }), "{e}");
    // A client without memory would accept it: the datastore is what refuses.
    let fresh = load(None).await.unwrap();
    assert!(fresh.timestamp().signed.version.get() < seen);
}
