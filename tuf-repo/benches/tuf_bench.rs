//! tuf-repo benchmark (a bench binary; `cargo bench -p tuf-repo`).
//!
//! Prints, from one run on this machine:
//! 1. signing time per role (Ed25519 over the role's canonical JSON through
//!    `tough::editor`), and the end-to-end `snapshot` / `refresh_timestamp`
//!    commands including file I/O, on a repository with 1,000 targets;
//! 2. refresh-and-verify time for that repository: tough loads it from
//!    root v1 (every role, every signature), metadata only and with every
//!    image downloaded and hashed;
//! 3. SHA-256 throughput of `hashing::hash_file` on a 256 MiB file against
//!    `sha256sum` on the same file in the same run, as a ratio (goal >= 0.8).
//!
//! Figures are printed, never asserted.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use sha2::Digest;
use tough::editor::signed::SignedRole;
use tough::schema::{
    DelegatedTargets, Hashes, KeyHolder, Role, Root, Signed, Snapshot, Target, Targets, Timestamp,
};
use tuf_repo::firmware::FirmwareMeta;
use tuf_repo::repo::init::{init, OneKeyPerRole};
use tuf_repo::{Expiries, ManufacturerName, OnlineKeys, RepoDir, RepoLocation, SigningKey, Upload};

const TARGETS: usize = 1000;
const BIG: usize = 256 << 20;

fn per_iter(total: Duration, n: u32) -> String {
    let us = total.as_secs_f64() * 1e6 / f64::from(n);
    if us > 1000.0 {
        format!("{:>9.2} ms", us / 1000.0)
    } else {
        format!("{us:>9.1} us")
    }
}

async fn time_sign<T: Role + serde::Serialize + Clone>(
    label: &str,
    role: &T,
    holder: &KeyHolder,
    key: &SigningKey,
    n: u32,
) {
    let rng = SystemRandom::new();
    let sources = [key.key_source()];
    let bytes = role.canonical_form().map(|v| v.len()).unwrap_or(0);
    let start = Instant::now();
    for _ in 0..n {
        let s = SignedRole::new(role.clone(), holder, &sources, &rng).await;
        assert!(s.is_ok(), "signing {label} failed");
    }
    println!(
        "  sign {label:<28} {} per signature ({bytes} bytes canonical JSON)",
        per_iter(start.elapsed(), n)
    );
}

fn read<T: serde::de::DeserializeOwned>(p: &Path) -> T {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[tokio::main]
async fn main() {
    // cargo bench passes `--bench`; nothing else to parse.
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoDir::new(dir.path().join("repo"));
    let roles = OneKeyPerRole::generate();
    let acme_key = SigningKey::generate();
    let ex = Expiries::default();
    let acme = ManufacturerName::new("acme-medical").unwrap();
    init(&repo, &roles.config(ex), &roles.signers())
        .await
        .unwrap();
    roles
        .delegate_to(&repo, &acme, &acme_key, &ex)
        .await
        .unwrap();
    let OneKeyPerRole {
        root,
        targets: targets_key,
        snapshot,
        timestamp,
    } = roles;

    // 1,000 small images in one manufacturer upload, through the server path.
    let t0 = Instant::now();
    let imgs = dir.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * 90))
        .unwrap();
    let mut body = Targets::new(
        "1.0.0".into(),
        std::num::NonZeroU64::new(2).unwrap(),
        expires,
    );
    body.delegations = None;
    let mut paths = Vec::new();
    for i in 0..TARGETS {
        let name = format!("fw-{i:04}.bin");
        let bytes: Vec<u8> = (0..1024u32)
            .map(|j| (j as u8) ^ (i as u8))
            .chain((i as u32).to_le_bytes())
            .collect();
        let p = imgs.join(&name);
        std::fs::write(&p, &bytes).unwrap();
        paths.push(p);
        let fw = FirmwareMeta::new(
            vec![format!("hw-{i}")],
            semver::Version::new(1, 0, i as u64),
            None,
            None,
        )
        .unwrap();
        body.targets.insert(
            tough::TargetName::new(format!("acme-medical/{name}")).unwrap(),
            Target {
                length: bytes.len() as u64,
                hashes: Hashes {
                    sha256: sha2::Sha256::digest(&bytes).to_vec().into(),
                    _extra: HashMap::new(),
                },
                custom: fw.to_custom(),
                _extra: HashMap::new(),
            },
        );
    }
    let state = tuf_repo::RepoState::load(&repo).unwrap();
    let delegations = state.targets.signed.delegations.clone().unwrap();
    let role = DelegatedTargets {
        name: acme.to_string(),
        targets: body,
    };
    let signed_role = SignedRole::new(
        role.clone(),
        &KeyHolder::Delegations(delegations.clone()),
        &[acme_key.key_source()],
        &SystemRandom::new(),
    )
    .await
    .unwrap();
    let upload = Upload {
        manufacturer: acme.clone(),
        role_metadata: signed_role.buffer().clone(),
        images: paths,
    };
    let online = OnlineKeys {
        snapshot: vec![snapshot.clone()],
        timestamp: vec![timestamp.clone()],
    };
    let out = dir.path().join("repo-1000");
    tuf_repo::accept_upload(&repo, &upload, &online, ex.snapshot, ex.timestamp, &out)
        .await
        .unwrap();
    let repo = RepoDir::new(&out);
    println!(
        "tuf-repo benchmark ({TARGETS} targets; built and published in {:.2} s)",
        t0.elapsed().as_secs_f64()
    );

    println!("\n1. signing time per role");
    let root_m: Signed<Root> = read(&repo.metadata_file("root.json"));
    let targets_m: Signed<Targets> = read(&repo.metadata_file("targets.json"));
    let snap_m: Signed<Snapshot> = read(&repo.metadata_file("snapshot.json"));
    let ts_m: Signed<Timestamp> = read(&repo.metadata_file("timestamp.json"));
    let holder = KeyHolder::Root(root_m.signed.clone());
    time_sign("root", &root_m.signed, &holder, &root, 200).await;
    time_sign(
        "targets (delegates only)",
        &targets_m.signed,
        &holder,
        &targets_key,
        200,
    )
    .await;
    time_sign(
        "acme-medical (1000 targets)",
        &role,
        &KeyHolder::Delegations(delegations),
        &acme_key,
        20,
    )
    .await;
    time_sign("snapshot", &snap_m.signed, &holder, &snapshot, 200).await;
    time_sign("timestamp", &ts_m.signed, &holder, &timestamp, 200).await;
    let n = 50;
    let start = Instant::now();
    for _ in 0..n {
        tuf_repo::refresh_timestamp(&repo, std::slice::from_ref(&timestamp), ex.timestamp)
            .await
            .unwrap();
    }
    println!(
        "  refresh_timestamp command (incl. I/O) {} per run",
        per_iter(start.elapsed(), n)
    );
    let n = 20;
    let start = Instant::now();
    for _ in 0..n {
        tuf_repo::repo::online::snapshot(&repo, std::slice::from_ref(&snapshot), ex.snapshot)
            .await
            .unwrap();
    }
    println!(
        "  snapshot command (incl. I/O)          {} per run",
        per_iter(start.elapsed(), n)
    );
    tuf_repo::refresh_timestamp(&repo, std::slice::from_ref(&timestamp), ex.timestamp)
        .await
        .unwrap();

    println!("\n2. refresh-and-verify, {TARGETS} targets, tough client from root v1");
    let trusted = std::fs::read(repo.metadata_file("1.root.json")).unwrap();
    let loc = RepoLocation::Dir(out.clone());
    let n = 10;
    let start = Instant::now();
    let mut report = None;
    for _ in 0..n {
        report = Some(
            tuf_repo::verify::verify(&loc, &trusted, tough::FilesystemTransport, false)
                .await
                .unwrap(),
        );
    }
    let report = report.unwrap();
    assert_eq!(report.targets.len(), TARGETS);
    println!(
        "  metadata only (5 roles)               {} per refresh",
        per_iter(start.elapsed(), n)
    );
    let start = Instant::now();
    tuf_repo::verify::verify(&loc, &trusted, tough::FilesystemTransport, true)
        .await
        .unwrap();
    println!(
        "  + download and hash all {TARGETS} images   {} total",
        per_iter(start.elapsed(), 1)
    );
    let size = std::fs::metadata(repo.metadata_file("acme-medical.json"))
        .unwrap()
        .len();
    println!("  (acme-medical.json is {} KiB)", size / 1024);

    println!("\n3. SHA-256 of a 256 MiB target");
    let big = dir.path().join("big.bin");
    {
        let mut v = vec![0u8; BIG];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for chunk in v.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(&big, &v).unwrap();
    }
    let mib = (BIG >> 20) as f64;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut our_hex = String::new();
    let mut their_hex = String::new();
    for _ in 0..3 {
        let s = Instant::now();
        let d = tuf_repo::hashing::hash_file(&big, "big.bin").unwrap();
        ours.push(s.elapsed().as_secs_f64());
        our_hex = d.sha256_hex();
        let s = Instant::now();
        match Command::new("sha256sum").arg(&big).output() {
            Ok(o) if o.status.success() => {
                theirs.push(s.elapsed().as_secs_f64());
                their_hex = String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned();
            }
            _ => {}
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let ours_mbs = mib / best(&ours);
    println!("  tuf-repo hash_file (sha2, 1 MiB reads)  {ours_mbs:>8.0} MiB/s (best of 3)");
    if theirs.is_empty() {
        println!("  sha256sum not found: no baseline");
    } else {
        let theirs_mbs = mib / best(&theirs);
        println!("  sha256sum (same file, same run)         {theirs_mbs:>8.0} MiB/s (best of 3)");
        println!(
            "  ratio tuf-repo / sha256sum              {:>8.2}x (goal >= 0.80)",
            ours_mbs / theirs_mbs
        );
        println!("  digests agree: {}", our_hex == their_hex);
    }
}
