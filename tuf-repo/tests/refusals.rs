//! Every refusal the issue lists, each checked three ways: the request is
//! refused, the reason names what was wrong (error variant and message, or
//! the CLI's exit code and stderr), and the repository and the other
//! manufacturer keep working.

mod support;

use support::*;
use tuf_repo::{Error, SigningKey};

/// The rest of the world still works: the repository verifies through tough
/// and the other manufacturer can still ship.
async fn others_keep_working(f: &Fixture) {
    f.verify().await.expect("repository still verifies");
    let n = f
        .state()
        .delegated
        .get("other-co")
        .map_or(0, |t| t.signed.targets.len());
    let seed = u8::try_from(n % 200).unwrap() + 40;
    let v = format!("1.{n}.0");
    f.ship(
        &other_co(),
        &f.other,
        &format!("mon-{v}.bin"),
        &v,
        "mon-x",
        seed,
    )
    .await;
    let report = f
        .verify()
        .await
        .expect("verifies after the other manufacturer's release");
    assert!(report
        .targets
        .iter()
        .any(|(t, _)| t == &format!("other-co/mon-{v}.bin")));
}

// control: firmware-integrity
#[tokio::test]
async fn signing_with_an_untrusted_key_is_refused() {
    let f = Fixture::new().await;
    let before = f.state().snapshot.unwrap().signed.version;

    // The targets key may not sign the snapshot.
    let e = f
        .snapshot_with(std::slice::from_ref(&f.targets))
        .await
        .unwrap_err();
    match &e {
        Error::UntrustedKey {
            role,
            key_id,
            trusted,
        } => {
            assert_eq!(role, "snapshot");
            assert_eq!(key_id, f.targets.key_id());
            assert_eq!(trusted, &vec![f.snapshot.key_id().to_owned()]);
        }
        other => panic!("wrong refusal: {other}"),
    }
    assert!(e.to_string().contains("not trusted for role 'snapshot'"));
    assert_eq!(
        f.state().snapshot.unwrap().signed.version,
        before,
        "nothing written"
    );

    // A stranger's key may not sign a manufacturer's role.
    let stranger = SigningKey::generate();
    let img = f.image("pump-fw-9.bin", 100, 1);
    let e = f
        .release(
            &acme(),
            &stranger,
            "acme-medical/pump-fw-9.bin",
            &img,
            "9.0.0",
            "p",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::UntrustedKey { role, .. } if role == "acme-medical"),
        "{e}"
    );

    // The server refuses acme metadata signed by other-co's (delegated, but not for acme) key.
    let upload = f
        .hostile_acme_upload(
            "acme-medical/pump-fw-9.bin",
            &img,
            "9.0.0",
            "p",
            std::slice::from_ref(&f.other),
        )
        .await;
    let e = f.refused(&upload).await;
    match &e {
        Error::UntrustedKey { role, key_id, .. } => {
            assert_eq!(role, "acme-medical");
            assert_eq!(key_id, f.other.key_id());
        }
        other => panic!("wrong refusal: {other}"),
    }
    others_keep_working(&f).await;
}

#[tokio::test]
async fn a_threshold_not_met_is_refused() {
    let f = Fixture::new().await;
    // acme now needs 2 of its 2 keys.
    let acme2 = SigningKey::generate();
    tuf_repo::repo::delegate::delegate(
        &f.repo,
        &acme(),
        &[f.acme.public_key(), acme2.public_key()],
        2,
        std::slice::from_ref(&f.targets),
        f.expiries.targets,
        None,
    )
    .await
    .unwrap();
    f.resign_online().await;

    let img = f.image("pump-fw-3.0.0.bin", 500, 2);
    let e = f
        .release_acme("pump-fw-3.0.0.bin", &img, "3.0.0", "p")
        .await
        .unwrap_err();
    match &e {
        Error::ThresholdNotMet {
            role,
            threshold,
            valid,
        } => {
            assert_eq!((role.as_str(), *threshold, *valid), ("acme-medical", 2, 1));
        }
        other => panic!("wrong refusal: {other}"),
    }
    assert!(e
        .to_string()
        .contains("needs 2 valid signature(s) but has 1"));

    // Hand-signed with one key, uploaded anyway: the server refuses it too.
    let bytes = std::fs::read(&img).unwrap();
    let mut body = targets_body(2);
    insert_raw(
        &mut body,
        "acme-medical/pump-fw-3.0.0.bin",
        target_entry(&bytes, "3.0.0", "p"),
    );
    let one_sig = f
        .sign_acme(body.clone(), std::slice::from_ref(&f.acme))
        .await;
    let e = f.refused(&acme_upload(one_sig, vec![img.clone()])).await;
    assert!(
        matches!(&e, Error::ThresholdNotMet { role, threshold: 2, valid: 1 } if role == "acme-medical"),
        "{e}"
    );

    // Both keys: accepted (the check can pass).
    let two_sigs = f.sign_acme(body, &[f.acme.clone(), acme2.clone()]).await;
    f.accept(&acme_upload(two_sigs, vec![img])).await.unwrap();

    // A root that needs 2 signatures cannot be created with one.
    let extra = SigningKey::generate();
    let dir = f.path("repo2");
    let cfg = tuf_repo::repo::init::InitConfig {
        root: tuf_repo::repo::init::RoleSpec {
            keys: vec![f.root.public_key(), extra.public_key()],
            threshold: 2,
        },
        targets: spec(&f.targets),
        snapshot: spec(&f.snapshot),
        timestamp: spec(&f.timestamp),
        expiries: f.expiries,
    };
    let signers = tuf_repo::repo::init::InitSigners {
        root: vec![f.root.clone()],
        targets: vec![f.targets.clone()],
        snapshot: vec![f.snapshot.clone()],
        timestamp: vec![f.timestamp.clone()],
    };
    let e = tuf_repo::repo::init::init(&tuf_repo::RepoDir::new(&dir), &cfg, &signers)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::ThresholdNotMet { role, threshold: 2, valid: 1 } if role == "root"),
        "{e}"
    );
    assert!(
        !dir.join("metadata/1.root.json").exists(),
        "no partial root written"
    );
    others_keep_working(&f).await;
}

// control: firmware-integrity
#[tokio::test]
async fn releasing_outside_the_path_pattern_is_refused() {
    let f = Fixture::new().await;
    let img = f.image("evil.bin", 300, 3);
    let e = f
        .release(
            &acme(),
            &f.acme,
            "other-co/evil.bin",
            &img,
            "1.0.0",
            "mon-x",
        )
        .await
        .unwrap_err();
    match &e {
        Error::OutsideDelegation {
            role,
            target,
            pattern,
        } => {
            assert_eq!(
                (role.as_str(), target.as_str(), pattern.as_str()),
                ("acme-medical", "other-co/evil.bin", "acme-medical/*")
            );
        }
        other => panic!("wrong refusal: {other}"),
    }

    // Hand-made acme metadata that lists an other-co path: the server refuses.
    let upload = f
        .hostile_acme_upload(
            "other-co/evil.bin",
            &img,
            "1.0.0",
            "mon-x",
            std::slice::from_ref(&f.acme),
        )
        .await;
    let e = f.refused(&upload).await;
    assert!(
        matches!(&e, Error::OutsideDelegation { target, .. } if target == "other-co/evil.bin"),
        "{e}"
    );
    assert!(
        f.state().delegated["acme-medical"]
            .signed
            .targets
            .is_empty(),
        "nothing published for acme"
    );
    others_keep_working(&f).await;
    // acme itself still ships inside its scope.
    f.ship_acme("1.0.0", "p", 5).await;
    f.verify().await.unwrap();
}

#[tokio::test]
async fn unsafe_target_names_are_refused() {
    let f = Fixture::new().await;
    let img = f.image("x.bin", 64, 4);
    for bad in [
        "acme-medical/../other-co/x.bin",
        "/acme-medical/x.bin",
        "acme-medical\\x.bin",
        "acme-medical/./x.bin",
    ] {
        let e = f
            .release(&acme(), &f.acme, bad, &img, "1.0.0", "p")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidTargetName { name, .. } if name == bad),
            "{bad}: {e}"
        );
    }
    // Names tough accepts (and would silently resolve) but we refuse on upload.
    for bad in [
        "acme-medical/../acme-medical/x.bin",
        "/acme-medical/x.bin",
        "acme-medical\\x.bin",
    ] {
        let upload = f
            .hostile_acme_upload(bad, &img, "1.0.0", "p", std::slice::from_ref(&f.acme))
            .await;
        let e = f.refused(&upload).await;
        assert!(
            matches!(&e, Error::InvalidTargetName { name, .. } if name == bad),
            "{bad}: {e}"
        );
    }
    // The CLI says why and exits non-zero.
    let o = cli(
        f.dir.path(),
        &[
            &release_args("nokey.json", img.to_str().unwrap())[..],
            &[
                "--name",
                "../x.bin",
                "--hardware-id",
                "p",
                "--version",
                "1.0.0",
                "--out",
                "b",
            ],
        ]
        .concat(),
        &[],
    );
    assert!(!o.status.success());
    others_keep_working(&f).await;
}

// control: update-rollback
#[tokio::test]
async fn a_lower_version_than_the_published_one_is_refused() {
    let f = Fixture::new().await;
    f.ship_acme("2.1.0", "acme-pump-v2", 6).await;
    let img = f.image("pump-fw-2.0.0.bin", 200, 7);
    let e = f
        .release_acme("pump-fw-2.0.0.bin", &img, "2.0.0", "acme-pump-v2")
        .await
        .unwrap_err();
    match &e {
        Error::VersionNotNewer {
            published, offered, ..
        } => {
            assert!(published.starts_with("2.1.0"), "{published}");
            assert_eq!(offered, "2.0.0");
        }
        other => panic!("wrong refusal: {other}"),
    }
    // Same version again under a new name: refused too.
    let e = f
        .release_acme("pump-fw-2.1.0b.bin", &img, "2.1.0", "acme-pump-v2")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::VersionNotNewer { .. }), "{e}");

    // Hand-signed downgrade with a valid metadata version bump: the server refuses.
    let published = f.state().delegated["acme-medical"].signed.clone();
    let mut body = published.clone();
    body.version = std::num::NonZeroU64::new(published.version.get() + 1).unwrap();
    let bytes = std::fs::read(&img).unwrap();
    insert_raw(
        &mut body,
        "acme-medical/pump-fw-2.0.0.bin",
        target_entry(&bytes, "2.0.0", "acme-pump-v2"),
    );
    let signed = f.sign_acme(body, std::slice::from_ref(&f.acme)).await;
    let e = f.refused(&acme_upload(signed, vec![img.clone()])).await;
    assert!(
        matches!(&e, Error::VersionNotNewer { offered, .. } if offered == "2.0.0"),
        "{e}"
    );

    // Replaying the already-published metadata version: refused as a rollback.
    let old = f.metadata("acme-medical.json");
    let e = f.refused(&acme_upload(old, vec![])).await;
    assert!(
        matches!(
            e,
            Error::MetadataRollback {
                published: 2,
                offered: 2,
                ..
            }
        ),
        "{e}"
    );

    // Other hardware may use lower numbers; a higher version ships fine.
    f.ship_acme("2.2.0", "acme-pump-v2", 8).await;
    others_keep_working(&f).await;
}

/// Writes a timestamp that expired at 2020-01-01 (signed by the real key).
async fn write_expired_timestamp(f: &Fixture) {
    use tough::editor::signed::SignedRole;
    use tough::schema::{KeyHolder, Signed, Snapshot, Timestamp};
    let root = f.state().root.signed;
    let old: Signed<Timestamp> = serde_json::from_slice(&f.metadata("timestamp.json")).unwrap();
    let snap: Signed<Snapshot> = serde_json::from_slice(&f.metadata("snapshot.json")).unwrap();
    let mut ts = old.signed.clone();
    ts.version = std::num::NonZeroU64::new(old.signed.version.get() + 1).unwrap();
    ts.expires = "2020-01-01T00:00:00Z".parse().unwrap();
    assert_eq!(ts.meta["snapshot.json"].version, snap.signed.version);
    let s = SignedRole::new(
        ts,
        &KeyHolder::Root(root),
        &[f.timestamp.key_source()],
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .await
    .unwrap();
    std::fs::write(f.repo.metadata_file("timestamp.json"), s.buffer()).unwrap();
}

#[tokio::test]
async fn expired_metadata_is_reported_with_role_and_time() {
    let f = Fixture::new().await;
    f.ship_acme("1.0.0", "p", 1).await;
    write_expired_timestamp(&f).await;
    let e = f.verify().await.unwrap_err();
    match &e {
        Error::Expired {
            role,
            expired_at,
            resign,
        } => {
            assert_eq!(role, "timestamp");
            assert_eq!(expired_at, "2020-01-01T00:00:00Z");
            assert_eq!(*resign, "timestamp");
        }
        other => panic!("wrong refusal: {other}"),
    }
    // The CLI exits non-zero and names role and time.
    let o = cli(f.dir.path(), &["verify", "--repo", "repo"], &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("role 'timestamp' expired at 2020-01-01T00:00:00Z"),
        "{err}"
    );

    // python-tuf, an independent client, refuses it too.
    let py = f.python_refusal("acme-medical/pump-fw-1.0.0.bin");
    assert!(py.to_lowercase().contains("expired"), "{py}");

    // An expired manufacturer upload is refused by the server.
    let img = f.image("pump-fw-1.1.0.bin", 100, 2);
    let mut body = f.state().delegated["acme-medical"].signed.clone();
    body.version = std::num::NonZeroU64::new(2).unwrap();
    body.expires = "2021-06-01T00:00:00Z".parse().unwrap();
    insert_raw(
        &mut body,
        "acme-medical/pump-fw-1.1.0.bin",
        target_entry(&std::fs::read(&img).unwrap(), "1.1.0", "p"),
    );
    let signed = f.sign_acme(body, std::slice::from_ref(&f.acme)).await;
    let e = f.refused(&acme_upload(signed, vec![img])).await;
    assert!(
        matches!(&e, Error::Expired { role, expired_at, .. } if role == "acme-medical" && expired_at == "2021-06-01T00:00:00Z"),
        "{e}"
    );

    // An expired manufacturer role in the repository is reported by name.
    let mut body = f.state().delegated["acme-medical"].signed.clone();
    body.version = std::num::NonZeroU64::new(body.version.get() + 1).unwrap();
    body.expires = "2022-03-04T05:06:07Z".parse().unwrap();
    let v = body.version.get();
    let signed = f.sign_acme(body, std::slice::from_ref(&f.acme)).await;
    let good_role = f.metadata("acme-medical.json");
    f.install_acme_role(v, &signed);
    f.resign_online().await;
    let e = f.verify().await.unwrap_err();
    assert!(
        matches!(&e, Error::Expired { role, expired_at, resign } if role == "acme-medical" && expired_at == "2022-03-04T05:06:07Z" && *resign == "release"),
        "{e}"
    );
    // Put the good role back (as the next version) for the rest of the test.
    let mut body: tough::schema::Signed<tough::schema::Targets> =
        serde_json::from_slice(&good_role).unwrap();
    body.signed.version = std::num::NonZeroU64::new(v + 1).unwrap();
    let signed = f
        .sign_acme(body.signed, std::slice::from_ref(&f.acme))
        .await;
    f.install_acme_role(v + 1, &signed);
    // A new snapshot, and the online key fixes freshness; everything works again.
    f.resign_online().await;
    others_keep_working(&f).await;
}

#[tokio::test]
async fn malformed_or_truncated_json_is_refused() {
    let f = Fixture::new().await;
    f.ship_acme("1.0.0", "p", 1).await;

    // A truncated upload.
    let img2 = f.image("pump-fw-1.1.0.bin", 100, 2);
    let b = f
        .release_acme("pump-fw-1.1.0.bin", &img2, "1.1.0", "p")
        .await
        .unwrap();
    let full = std::fs::read(&b.role_metadata).unwrap();
    for cut in [full.len() / 2, full.len() - 3, 1] {
        let e = f
            .refused(&acme_upload(full[..cut].to_vec(), vec![b.image.clone()]))
            .await;
        assert!(
            matches!(&e, Error::Json { path, .. } if path.ends_with("acme-medical.json")),
            "{e}"
        );
    }
    let e = f
        .refused(&acme_upload(
            b"{\"signed\": 42, \"signatures\": []}".to_vec(),
            vec![],
        ))
        .await;
    assert!(matches!(e, Error::Json { .. }), "{e}");

    // The signed part altered where tough's parser does not look (`_type`):
    // the signature still checks over tough's re-serialisation, but
    // python-tuf would refuse the published bytes, so the server refuses too.
    let text = String::from_utf8(full.clone()).unwrap();
    let altered = text.replacen("\"_type\": \"targets\"", "\"_type\": \"uargets\"", 1);
    assert_ne!(altered, text);
    let e = f
        .refused(&acme_upload(altered.into_bytes(), vec![b.image.clone()]))
        .await;
    assert!(
        matches!(&e, Error::Json { .. }) && e.to_string().contains("do not survive parsing"),
        "{e}"
    );

    // A truncated timestamp in the repository: tough refuses it, the CLI exits non-zero.
    let ts_path = f.repo.metadata_file("timestamp.json");
    let ts = std::fs::read(&ts_path).unwrap();
    std::fs::write(&ts_path, &ts[..ts.len() / 3]).unwrap();
    let e = f.verify().await.unwrap_err();
    assert!(matches!(e, Error::Verify { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("timestamp"), "{e}");
    let o = cli(f.dir.path(), &["verify", "--repo", "repo"], &[]);
    assert!(!o.status.success());
    // Our own tools name the broken file.
    let e = f
        .timestamp_with(std::slice::from_ref(&f.timestamp))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Json { path, .. } if path.ends_with("timestamp.json")),
        "{e}"
    );
    std::fs::write(&ts_path, &ts).unwrap();

    // A malformed snapshot copy on the author's side is named too.
    let snap_path = f.repo.metadata_file("snapshot.json");
    let snap = std::fs::read(&snap_path).unwrap();
    std::fs::write(&snap_path, b"{ not json").unwrap();
    let e = tuf_repo::RepoState::load(&f.repo).unwrap_err();
    assert!(
        matches!(&e, Error::Json { path, .. } if path.ends_with("snapshot.json")),
        "{e}"
    );
    std::fs::write(&snap_path, &snap).unwrap();

    // The good upload still goes through and others keep working.
    let up = tuf_repo::repo::publish::read_bundle(&b.dir, &acme()).unwrap();
    f.accept(&up).await.unwrap();
    others_keep_working(&f).await;
}

#[test]
fn a_wrong_passphrase_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pass = [("WARDGATE_TUF_PASSPHRASE", "correct horse battery")];
    let wrong = [("WARDGATE_TUF_PASSPHRASE", "incorrect horse")];
    let o = cli(d, &["keygen", "--out", "root.json", "--encrypt"], &pass);
    assert!(o.status.success(), "{:?}", text(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("root.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    for k in ["targets", "snapshot", "timestamp"] {
        let o = cli(d, &["keygen", "--out", &format!("{k}.json")], &[]);
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let init = |env: &[(&str, &str)]| cli(d, &init_args(), env);
    let o = init(&wrong);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("wrong passphrase for key file root.json"),
        "{err}"
    );
    assert!(!d.join("repo/metadata/root.json").exists());
    let o = init(&[]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("is encrypted"), "{:?}", text(&o));
    // The right passphrase works and the repository verifies.
    let o = init(&pass);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = cli(d, &["verify", "--repo", "repo"], &[]);
    assert!(o.status.success(), "{:?}", text(&o));
}
