//! The workspace's own binaries (`gateway`, `ota-server`, `device-sim`,
//! `tuf-repo`) as processes: for the end-to-end tests, from the target
//! directory the test runs from (built there once when missing or older
//! than the sources), and for the ward demo, from the directory it was
//! built into.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{HarnessError, Result};

/// `(package, binary)` of every workspace binary a ward runs.
pub const BINARIES: [(&str, &str); 4] = [
    ("gateway", "gateway"),
    ("ota-server", "ota-server"),
    ("device-sim", "device-sim"),
    ("tuf-repo", "tuf-repo"),
];

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `<target>/<profile>`.
    pub dir: PathBuf,
}

/// The crates whose sources the binaries are built from.
const SOURCES: [&str; 6] = [
    "gateway",
    "ota-server",
    "device-sim",
    "tuf-repo",
    "protocol",
    "tls",
];

impl Bins {
    /// The binaries beside the running test executable
    /// (`<target>/<profile>/deps/<test>` -> `<target>/<profile>`).
    /// `cargo test --workspace` builds them there; when one is missing or
    /// older than a source file of the workspace they are built once
    /// (`cargo build`) before the first use.
    ///
    /// # Panics
    /// When the test does not run from a cargo target directory or the
    /// build fails (a test cannot go on without its binaries).
    pub fn for_tests() -> &'static Bins {
        static BINS: OnceLock<Bins> = OnceLock::new();
        BINS.get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("test runs from <target>/<profile>/deps")
                .to_path_buf();
            let bins = Bins { dir };
            if bins.stale() {
                bins.build().expect("cargo build of the workspace binaries");
            }
            bins
        })
    }

    /// The binaries in `dir`, which must hold all of [`BINARIES`].
    ///
    /// # Errors
    /// [`HarnessError::Missing`] naming the first binary not there.
    pub fn at(dir: &Path) -> Result<Self> {
        // Absolute, so that commands run in another working directory.
        let dir = std::fs::canonicalize(dir).map_err(|_| HarnessError::Missing {
            program: dir.to_path_buf(),
        })?;
        for (_, bin) in BINARIES {
            if !dir.join(bin).is_file() {
                return Err(HarnessError::Missing {
                    program: dir.join(bin),
                });
            }
        }
        Ok(Self { dir })
    }

    /// The path of binary `name` (one of [`BINARIES`]).
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A command for binary `name`, logging at `info` without colours.
    #[must_use]
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(self.path(name));
        c.env("WARDGATE_LOG", "info").env("NO_COLOR", "1");
        c
    }

    /// Whether a binary is missing or older than the newest source file.
    fn stale(&self) -> bool {
        let root = crate::python::workspace_root();
        let sources = SOURCES
            .iter()
            .filter_map(|c| newest(&root.join(c).join("src")))
            .chain(
                std::fs::metadata(root.join("Cargo.lock"))
                    .and_then(|m| m.modified())
                    .ok(),
            )
            .max();
        BINARIES.iter().any(|(_, bin)| {
            let built = std::fs::metadata(self.dir.join(bin)).and_then(|m| m.modified());
            match (built, sources) {
                (Ok(b), Some(s)) => b < s,
                _ => true,
            }
        })
    }

    /// `cargo build` of [`BINARIES`] into this target directory, in the
    /// environment `cargo test` was started in, minus what cargo set for
    /// the test alone.
    fn build(&self) -> Result<()> {
        let target_dir = self.dir.parent().unwrap_or(&self.dir);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(&cargo);
        for (key, _) in std::env::vars() {
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
        cmd.current_dir(crate::python::workspace_root())
            .env("CARGO_TARGET_DIR", target_dir)
            .args(["build", "--quiet", "--locked"]);
        for (package, bin) in BINARIES {
            cmd.args(["-p", package, "--bin", bin]);
        }
        if self.dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().map_err(|source| HarnessError::Spawn {
            program: cargo.clone(),
            source,
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(HarnessError::Exited {
                program: format!("{cargo} build"),
                status,
                log: "see the compiler output above".into(),
            })
        }
    }
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
