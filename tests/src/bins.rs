//! The workspace binaries an end-to-end test runs (`gateway`, `ota-server`,
//! `device-sim`, `tuf-repo`), from the target directory the test runs from.
//!
//! `cargo test --workspace` builds them beside the test; when one is
//! missing or older than a source file of the workspace (as after
//! `cargo test -p wardgate-tests --test <name>`, which builds none of
//! them), they are built here once (`cargo build --bins`, in the
//! environment `cargo test` was started in) before anything starts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::python::workspace_root;

/// The binaries, as (package, binary).
pub const BINARIES: [(&str, &str); 4] = [
    ("gateway", "gateway"),
    ("ota-server", "ota-server"),
    ("device-sim", "device-sim"),
    ("tuf-repo", "tuf-repo"),
];

/// The crates whose sources the binaries are built from.
const SOURCES: [&str; 6] = [
    "gateway",
    "ota-server",
    "device-sim",
    "tuf-repo",
    "protocol",
    "tls",
];

/// The profile directory (`<target>/<profile>`) holding fresh binaries.
#[derive(Debug)]
pub struct Bins {
    dir: PathBuf,
}

/// Newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut latest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest(&path)
        } else {
            entry.metadata().ok()?.modified().ok()
        };
        latest = latest.max(t);
    }
    latest
}

/// `cargo build` of [`BINARIES`] into the target directory of
/// `profile_dir`, in the environment `cargo test` was started in.
fn build(profile_dir: &Path, root: &Path) {
    let target_dir = profile_dir.parent().expect("target dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    for (key, _) in std::env::vars() {
        // What cargo sets for this test only (package facts, library path).
        let for_this_test = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
        ]
        .iter()
        .any(|p| key.starts_with(p));
        if for_this_test || key == "LD_LIBRARY_PATH" {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(root)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--quiet", "--locked"]);
    for (package, bin) in BINARIES {
        cmd.args(["-p", package, "--bin", bin]);
    }
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build for the binaries");
    assert!(status.success(), "cargo build of the binaries failed");
}

impl Bins {
    /// The binaries, built first if any is missing or stale.
    ///
    /// # Panics
    /// When the test does not run from `<target>/<profile>/deps`, or the
    /// build fails (its output says why).
    pub fn get() -> &'static Bins {
        static BINS: OnceLock<Bins> = OnceLock::new();
        BINS.get_or_init(|| {
            // <target>/<profile>/deps/<this test> -> <target>/<profile>
            let exe = std::env::current_exe().expect("test executable path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("test runs from <target>/<profile>/deps")
                .to_path_buf();
            let root = workspace_root();
            let sources = SOURCES
                .iter()
                .filter_map(|c| newest(&root.join(c).join("src")))
                .chain(
                    std::fs::metadata(root.join("Cargo.lock"))
                        .and_then(|m| m.modified())
                        .ok(),
                )
                .max();
            let stale = BINARIES.iter().any(|(_, bin)| {
                let built = std::fs::metadata(profile_dir.join(bin)).and_then(|m| m.modified());
                match (built, sources) {
                    (Ok(b), Some(s)) => b < s,
                    _ => true,
                }
            });
            if stale {
                build(&profile_dir, root);
            }
            Bins { dir: profile_dir }
        })
    }

    /// The path of binary `name` (one of [`BINARIES`]).
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A command running binary `name`, logging at `info` without colour.
    #[must_use]
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(self.path(name));
        c.env("WARDGATE_LOG", "info").env("NO_COLOR", "1");
        c
    }
}
