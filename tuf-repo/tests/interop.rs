//! A repository made by tuf-repo is accepted by two independent TUF clients:
//! tough (in-process) and python-tuf 7's `ngclient.Updater` (a Python
//! process fetching over HTTP on a loopback ephemeral port). Both must get the
//! manufacturer's image byte for byte.

mod support;

use support::*;
use tuf_repo::RepoLocation;

#[tokio::test]
async fn tough_and_python_tuf_both_fetch_the_manufacturers_target() {
    let f = Fixture::new().await;
    let img = f.ship_acme("2.1.0", "acme-pump-v2", 7).await;
    let other_img = f
        .ship(
            &other_co(),
            &f.other,
            "monitor-1.0.0.bin",
            "1.0.0",
            "mon-x",
            9,
        )
        .await;
    let want = std::fs::read(&img).unwrap();

    // tough: every role loads, every image's hash checks.
    let report = f.verify().await.unwrap();
    let names: Vec<&str> = report.roles.iter().map(|r| r.role.as_str()).collect();
    assert_eq!(
        names,
        [
            "root",
            "timestamp",
            "snapshot",
            "targets",
            "acme-medical",
            "other-co"
        ]
    );
    assert_eq!(report.targets.len(), 2);
    let got = tuf_repo::verify::fetch_target(
        &RepoLocation::Dir(f.repo.path().to_owned()),
        &f.trusted_root(),
        tough::FilesystemTransport,
        "acme-medical/pump-fw-2.1.0.bin",
    )
    .await
    .unwrap();
    assert_eq!(got, want);

    // python-tuf: refresh from root v1 and download both manufacturers' targets.
    let j = f.python_fetch("acme-medical/pump-fw-2.1.0.bin").unwrap();
    let path = j["path"].as_str().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), want);
    assert_eq!(j["custom"]["version"], "2.1.0");
    assert_eq!(j["custom"]["hardware_ids"][0], "acme-pump-v2");
    let state = f.state();
    assert_eq!(
        j["timestamp_version"],
        state.timestamp.as_ref().unwrap().signed.version.get()
    );
    let j2 = f.python_fetch("other-co/monitor-1.0.0.bin").unwrap();
    assert_python_fetched(&j2, &other_img);
}

#[tokio::test]
async fn python_tuf_refuses_a_tampered_image() {
    let f = Fixture::new().await;
    f.ship_acme("2.1.0", "acme-pump-v2", 3).await;
    // Flip a byte in the stored image (both hard-linked names share it).
    let state = f.state();
    let t = &state.delegated["acme-medical"].signed.targets;
    let (_, entry) = t.iter().next().unwrap();
    let sha = hex::encode(&*entry.hashes.sha256);
    let p = f
        .repo
        .targets_dir()
        .join(format!("acme-medical/{sha}.pump-fw-2.1.0.bin"));
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[0] ^= 0xff;
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, &bytes).unwrap();
    let err = f.python_refusal("acme-medical/pump-fw-2.1.0.bin");
    assert!(
        err.contains("Length") || err.contains("hash") || err.contains("Hash"),
        "{err}"
    );
    // tough reads the other (untouched) link and still verifies: the
    // metadata is fine, only one copy was damaged.
    f.verify().await.unwrap();
}
