//! The checked-in SBOM (`sbom/*.cdx.json`, CycloneDX JSON made by
//! `scripts/sbom` with cargo-cyclonedx) is complete for `Cargo.lock`.
//!
//! Every crate of the lock file that a workspace package depends on
//! (normal or build dependency, on any platform, transitively) must be a
//! component of the SBOM with the locked version, and every workspace
//! package must have its SBOM file. The remaining lock-file crates are the
//! ones reached only as dev-dependencies (test and bench tools such as
//! `criterion`); they never ship and are listed in the test output. A
//! dependency change without `scripts/sbom` fails here, naming the crates
//! missing from the SBOM.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use wardgate_tests::process::assert_success;
use wardgate_tests::python::workspace_root;

type Crate = (String, String);

fn lock_packages(root: &Path) -> BTreeSet<Crate> {
    let lock: toml::Table = std::fs::read_to_string(root.join("Cargo.lock"))
        .expect("Cargo.lock")
        .parse()
        .expect("Cargo.lock is TOML");
    lock["package"]
        .as_array()
        .expect("[[package]]")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_owned(),
                p["version"].as_str().expect("version").to_owned(),
            )
        })
        .collect()
}

/// Workspace packages, and every package reachable from them through
/// normal or build dependencies (`cargo metadata`, all platforms).
fn shipped(root: &Path) -> (BTreeSet<String>, BTreeSet<Crate>) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = assert_success(
        Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--locked", "--offline"])
            .current_dir(root),
        "cargo metadata",
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let id_to_crate: BTreeMap<String, Crate> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id").to_owned(),
                (
                    p["name"].as_str().expect("name").to_owned(),
                    p["version"].as_str().expect("version").to_owned(),
                ),
            )
        })
        .collect();
    let members: Vec<String> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve.nodes") {
        let id = node["id"].as_str().expect("node id").to_owned();
        for dep in node["deps"].as_array().expect("deps") {
            let shipped_kind = dep["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if shipped_kind {
                edges
                    .entry(id.clone())
                    .or_default()
                    .push(dep["pkg"].as_str().expect("pkg").to_owned());
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut stack = members.clone();
    while let Some(id) = stack.pop() {
        if seen.insert(id.clone()) {
            stack.extend(edges.get(&id).cloned().unwrap_or_default());
        }
    }
    let names = members
        .iter()
        .filter_map(|m| id_to_crate.get(m).map(|(n, _)| n.clone()))
        .collect();
    let reached = seen
        .iter()
        .filter_map(|id| id_to_crate.get(id).cloned())
        .collect();
    (names, reached)
}

fn collect_components(value: &serde_json::Value, into: &mut BTreeSet<Crate>) {
    if let (Some(name), Some(version)) = (value["name"].as_str(), value["version"].as_str()) {
        into.insert((name.to_owned(), version.to_owned()));
    }
    if let Some(list) = value["components"].as_array() {
        for c in list {
            collect_components(c, into);
        }
    }
}

#[test]
fn the_sbom_lists_every_crate_of_the_lock_file() {
    let root = workspace_root();
    let dir = root.join("sbom");
    let mut listed = BTreeSet::new();
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(&dir)
        .expect("sbom/ (run scripts/sbom)")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(package) = name.strip_suffix(".cdx.json") else {
            continue;
        };
        let bom: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.path()).expect("read SBOM"))
                .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        assert_eq!(bom["bomFormat"], "CycloneDX", "{name}");
        assert!(bom["specVersion"].is_string(), "{name}: no specVersion");
        collect_components(&bom["metadata"]["component"], &mut listed);
        collect_components(&bom, &mut listed);
        files.insert(package.to_owned());
    }
    let (members, reached) = shipped(root);
    let no_file: Vec<_> = members.difference(&files).collect();
    assert!(
        no_file.is_empty(),
        "no SBOM for {no_file:?}; run scripts/sbom"
    );

    let lock = lock_packages(root);
    let missing: Vec<_> = reached.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "{} crate(s) of Cargo.lock are not in sbom/: {missing:?}; run scripts/sbom",
        missing.len()
    );
    let not_in_lock: Vec<_> = reached.difference(&lock).collect();
    assert!(
        not_in_lock.is_empty(),
        "resolved but not locked: {not_in_lock:?}"
    );
    let dev_only: Vec<String> = lock
        .difference(&reached)
        .map(|(n, v)| format!("{n} {v}"))
        .collect();
    eprintln!(
        "SBOM: {} of {} locked crates ship and are listed; {} are dev-only: {}",
        reached.len(),
        lock.len(),
        dev_only.len(),
        dev_only.join(", ")
    );
}
