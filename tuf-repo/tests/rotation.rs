//! Root rotation: a client that trusts root v1 follows v2 and v3, and refuses
//! a v3 signed only by the old (v2) root keys; key replacement for the
//! online and targets roles.

mod support;

use aws_lc_rs::rand::SystemRandom;
use support::*;
use tough::editor::signed::SignedRole;
use tough::schema::{KeyHolder, RoleType, Root, Signed};
use tuf_repo::{Error, SigningKey};

/// Root v(N+1) with `new_key` as root key, signed only by the keys in `signers`
/// under the current root (the attacker holds only the old keys).
async fn root_signed_by_old_keys_only(
    f: &Fixture,
    new_key: &SigningKey,
    signers: &[SigningKey],
) -> Vec<u8> {
    let current: Signed<Root> =
        serde_json::from_slice(&std::fs::read(f.repo.metadata_file("root.json")).unwrap()).unwrap();
    let mut next = current.signed.clone();
    next.version = std::num::NonZeroU64::new(current.signed.version.get() + 1).unwrap();
    let id: tough::schema::decoded::Decoded<tough::schema::decoded::Hex> =
        hex::decode(new_key.key_id()).unwrap().into();
    next.keys.insert(id.clone(), new_key.public_key());
    next.roles.get_mut(&RoleType::Root).unwrap().keyids = vec![id];
    let sources: Vec<_> = signers.iter().map(SigningKey::key_source).collect();
    SignedRole::new(
        next,
        &KeyHolder::Root(current.signed),
        &sources,
        &SystemRandom::new(),
    )
    .await
    .unwrap()
    .buffer()
    .clone()
}

#[tokio::test]
async fn client_follows_v1_to_v3_and_refuses_a_v3_signed_by_old_keys_only() {
    let f = Fixture::new().await;
    let img = f.ship_acme("1.0.0", "p", 1).await;

    let r2 = SigningKey::generate();
    let r3 = SigningKey::generate();
    assert_eq!(
        f.rotate(RoleType::Root, &spec(&r2), &[f.root.clone(), r2.clone()])
            .await
            .unwrap(),
        2
    );

    // v3 signed only by v2's key (the new v3 key never signed): refused by tough and python-tuf.
    let forged = root_signed_by_old_keys_only(&f, &r3, std::slice::from_ref(&r2)).await;
    std::fs::write(f.repo.metadata_file("3.root.json"), &forged).unwrap();
    let e = f.verify().await.unwrap_err();
    assert!(matches!(e, Error::Verify { .. }), "{e}");
    assert!(e.to_string().contains("root"), "{e}");
    let py = f.python_refusal("acme-medical/pump-fw-1.0.0.bin");
    assert!(
        py.contains("root") || py.contains("signature") || py.contains("Unsigned"),
        "{py}"
    );

    // Our own rotate refuses to write it too: the new threshold is not met.
    std::fs::remove_file(f.repo.metadata_file("3.root.json")).unwrap();
    let e = f
        .rotate(RoleType::Root, &spec(&r3), std::slice::from_ref(&r2))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::ThresholdNotMet { role, threshold: 1, valid: 0 } if role.contains("version 3")),
        "{e}"
    );
    assert!(!f.repo.metadata_file("3.root.json").exists());
    // The v1 key alone cannot sign v3 either (not trusted by v2 or v3).
    let e = f
        .rotate(RoleType::Root, &spec(&r3), &[f.root.clone(), r3.clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::UntrustedKey { key_id, .. } if key_id == f.root.key_id()),
        "{e}"
    );

    // A proper v3 (old and new keys): both clients walk v1 -> v2 -> v3.
    assert_eq!(
        f.rotate(RoleType::Root, &spec(&r3), &[r2.clone(), r3.clone()])
            .await
            .unwrap(),
        3
    );
    let report = f.verify().await.unwrap();
    assert_eq!(report.roles[0].role, "root");
    assert_eq!(report.roles[0].version, 3);
    let j = f.python_fetch("acme-medical/pump-fw-1.0.0.bin").unwrap();
    assert_eq!(j["root_version"], 3);
    assert_python_fetched(&j, &img);
}

#[tokio::test]
async fn online_and_targets_keys_can_be_replaced() {
    let f = Fixture::new().await;
    f.ship_acme("1.0.0", "p", 1).await;

    // Timestamp key replaced: the old key is refused afterwards, the new one works.
    let ts2 = SigningKey::generate();
    f.rotate(
        RoleType::Timestamp,
        &spec(&ts2),
        std::slice::from_ref(&f.root),
    )
    .await
    .unwrap();
    let e = f
        .timestamp_with(std::slice::from_ref(&f.timestamp))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::UntrustedKey { role, .. } if role == "timestamp"),
        "{e}"
    );
    // Until the timestamp is re-signed, clients refuse the old one.
    assert!(f.verify().await.is_err());
    f.timestamp_with(std::slice::from_ref(&ts2)).await.unwrap();
    f.verify().await.unwrap();

    // Targets key replaced: re-sign targets with the new key, then snapshot and timestamp.
    let t2 = SigningKey::generate();
    f.rotate(RoleType::Targets, &spec(&t2), std::slice::from_ref(&f.root))
        .await
        .unwrap();
    let e = tuf_repo::repo::delegate::resign_targets(
        &f.repo,
        std::slice::from_ref(&f.targets),
        f.expiries.targets,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, Error::UntrustedKey { role, .. } if role == "targets"),
        "{e}"
    );
    tuf_repo::repo::delegate::resign_targets(
        &f.repo,
        std::slice::from_ref(&t2),
        f.expiries.targets,
    )
    .await
    .unwrap();
    f.snapshot_with(std::slice::from_ref(&f.snapshot))
        .await
        .unwrap();
    f.timestamp_with(&[ts2]).await.unwrap();
    let report = f.verify().await.unwrap();
    assert_eq!(report.roles[0].version, 3);
    assert_eq!(report.targets.len(), 1);
}
