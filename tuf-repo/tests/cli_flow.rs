//! The `tuf-repo` binary end to end: every subcommand, as an operator and a
//! manufacturer would run them, ending in a verification through tough and a
//! python-tuf download.

mod support;

use std::path::Path;

use support::*;

fn ok(d: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = cli(d, args, env);
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "tuf-repo {args:?} failed:\n{out}\n{err}"
    );
    out
}

#[test]
fn every_subcommand_from_keygen_to_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pass = [("ACME_PASS", "acme secret")];
    for k in [
        "root",
        "root2",
        "targets",
        "snapshot",
        "timestamp",
        "timestamp2",
    ] {
        let out = ok(d, &["keygen", "--out", &format!("{k}.json")], &[]);
        assert!(out.contains("key id:"), "{out}");
        assert!(d.join(format!("{k}.pub.json")).exists());
    }
    ok(
        d,
        &[
            "--passphrase-env",
            "ACME_PASS",
            "keygen",
            "--out",
            "acme.json",
            "--encrypt",
        ],
        &pass,
    );
    ok(
        d,
        &[&init_args()[..], &["--timestamp-expires", "2h"]].concat(),
        &[],
    );
    ok(
        d,
        &[
            "--passphrase-env",
            "ACME_PASS",
            "enrol",
            "--manufacturer",
            "acme-medical",
            "--key",
            "acme.json",
            "--out",
            "enrol.json",
        ],
        &pass,
    );
    ok(
        d,
        &[
            "delegate",
            "--repo",
            "repo",
            "--manufacturer",
            "acme-medical",
            "--manufacturer-key",
            "acme.pub.json",
            "--enrolment",
            "enrol.json",
            "--targets-key",
            "targets.json",
        ],
        &[],
    );
    ok(
        d,
        &["snapshot", "--repo", "repo", "--key", "snapshot.json"],
        &[],
    );
    ok(
        d,
        &["timestamp", "--repo", "repo", "--key", "timestamp.json"],
        &[],
    );
    let image: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("pump-fw-2.1.0.bin"), &image).unwrap();
    let out = ok(
        d,
        &[
            &["--passphrase-env", "ACME_PASS"][..],
            &release_args("acme.json", "pump-fw-2.1.0.bin"),
            &[
                "--hardware-id",
                "acme-pump-v2",
                "--version",
                "2.1.0",
                "--min-version",
                "2.0.0",
                "--notes",
                "fixes",
                "--out",
                "bundle",
            ],
        ]
        .concat(),
        &pass,
    );
    assert!(out.contains("acme-medical/pump-fw-2.1.0.bin"), "{out}");
    let out = ok(
        d,
        &[
            "publish",
            "--repo",
            "repo",
            "--manufacturer",
            "acme-medical",
            "--bundle",
            "bundle",
            "--snapshot-key",
            "snapshot.json",
            "--timestamp-key",
            "timestamp.json",
        ],
        &[],
    );
    assert!(out.contains("'acme-medical' v2"), "{out}");
    // Replace the root key and the timestamp key.
    ok(
        d,
        &[
            "rotate",
            "--repo",
            "repo",
            "--role",
            "root",
            "--new-key",
            "root2.pub.json",
            "--root-key",
            "root.json",
            "--root-key",
            "root2.json",
        ],
        &[],
    );
    let out = ok(
        d,
        &[
            "rotate",
            "--repo",
            "repo",
            "--role",
            "timestamp",
            "--new-key",
            "timestamp2.pub.json",
            "--root-key",
            "root2.json",
            "--resign-key",
            "timestamp2.json",
        ],
        &[],
    );
    assert!(out.contains("timestamp v"), "{out}");
    // The old timestamp key is refused now.
    let o = cli(
        d,
        &["timestamp", "--repo", "repo", "--key", "timestamp.json"],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("not trusted for role 'timestamp'"),
        "{:?}",
        text(&o)
    );

    let out = ok(d, &["verify", "--repo", "repo", "--check-targets"], &[]);
    assert!(out.contains("root             v3"), "{out}");
    assert!(out.contains("acme-medical     v2"), "{out}");
    assert!(
        out.contains("acme-medical/pump-fw-2.1.0.bin (200000 bytes)"),
        "{out}"
    );

    let j = python_fetch(
        &d.join("repo"),
        &d.join("repo/metadata/1.root.json"),
        "acme-medical/pump-fw-2.1.0.bin",
        &d.join("py"),
    )
    .unwrap();
    assert_eq!(j["root_version"], 3);
    assert_eq!(j["custom"]["min_version"], "2.0.0");
    assert_eq!(std::fs::read(j["path"].as_str().unwrap()).unwrap(), image);
}
