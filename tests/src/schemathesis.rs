//! `schemathesis` (PyPI, 4.x), run as a process against a running server's
//! OpenAPI document: it generates requests from the document and checks
//! every answer against it. `scripts/setup-test-deps` installs it into the
//! same `.venv` as the other Python checkers ([`crate::python`]).
//!
//! [`find`] locates the CLI next to the test Python; [`Run::test_cases`]
//! reads how many test cases it generated from its summary, so a run that
//! silently tested nothing can be told apart from a clean one.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{HarnessError, Result};

/// The `schemathesis` CLI next to the test Python (`$WARDGATE_PYTHON`'s
/// folder, else `<workspace>/.venv/bin`), if installed there.
#[must_use]
pub fn find() -> Option<PathBuf> {
    let python = crate::python::python().ok()?;
    let cli = python.parent()?.join("schemathesis");
    cli.is_file().then_some(cli)
}

/// [`find`], or: under CI (`CI` set) a panic, since CI installs it; else
/// `None` after printing why the caller skips.
///
/// # Panics
/// When `CI` is set and the CLI is missing.
#[must_use]
pub fn require() -> Option<PathBuf> {
    let found = find();
    if found.is_none() {
        let why = "schemathesis is not installed next to the test Python";
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!("{why} (CI installs it with scripts/setup-test-deps)");
        }
        eprintln!("SKIPPED: {why}; run scripts/setup-test-deps");
    }
    found
}

/// One `schemathesis run`.
#[derive(Debug, Clone)]
pub struct Options {
    /// URL of the served OpenAPI document.
    pub schema_url: String,
    /// CA bundle the server's certificate is checked against.
    pub ca: PathBuf,
    /// Extra headers on every request (`Authorization: Bearer ...`).
    pub headers: Vec<(String, String)>,
    /// Client certificate and key (PEM), for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Test cases per operation (`--max-examples`).
    pub max_examples: u32,
    /// The checks (`--checks`).
    pub checks: Vec<String>,
    /// Anything else to pass, as is.
    pub extra: Vec<String>,
}

/// What a run printed.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit status 0: no check failed, no error.
    pub success: bool,
    /// Standard output (the report).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Test cases generated, from the summary block
    /// `Test cases:` / `  N generated, N passed` (0 when absent).
    #[must_use]
    pub fn test_cases(&self) -> u64 {
        self.summary("Test cases:", |part| match part.split_once(' ') {
            Some((n, "generated")) => n.parse().ok(),
            _ => None,
        })
    }

    /// Operations tested, from the summary block `API Operations:` /
    /// `  Tested: N` (0 when absent).
    #[must_use]
    pub fn operations_tested(&self) -> u64 {
        self.summary("API Operations:", |part| {
            part.strip_prefix("Tested:")?.trim().parse().ok()
        })
    }

    /// The report from its warnings on (what was skipped, refused or
    /// missing, and the summary), for the test log.
    #[must_use]
    pub fn tail(&self) -> &str {
        ["WARNINGS", "SUMMARY"]
            .iter()
            .find_map(|h| self.stdout.find(&format!(" {h} ")))
            .map_or(self.stdout.as_str(), |i| &self.stdout[i..])
    }

    /// The first value `read` finds in the comma-separated parts of the
    /// summary block that opens with `label` (that line and the indented
    /// lines under it).
    fn summary(&self, label: &str, read: impl Fn(&str) -> Option<u64>) -> u64 {
        let Some((_, after)) = self.stdout.rsplit_once(label) else {
            return 0;
        };
        after
            .lines()
            .enumerate()
            .take_while(|(i, l)| *i == 0 || l.starts_with(' '))
            .flat_map(|(_, l)| l.split(',').map(str::trim).collect::<Vec<_>>())
            .find_map(read)
            .unwrap_or(0)
    }
}

/// Runs `cli` with `options` to completion (blocking: call it from
/// `spawn_blocking` when the server runs on the same runtime).
///
/// # Errors
/// [`HarnessError::Io`] when the CLI cannot be started.
pub fn run(cli: &Path, options: &Options) -> Result<Run> {
    let mut cmd = Command::new(cli);
    cmd.arg("run")
        .arg(&options.schema_url)
        .arg("--tls-verify")
        .arg(&options.ca)
        .arg("--max-examples")
        .arg(options.max_examples.to_string())
        .arg("--checks")
        .arg(options.checks.join(","))
        .args(["--no-color", "--generation-database", "none"]);
    for (name, value) in &options.headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    if let Some((cert, key)) = &options.client_cert {
        cmd.arg("--request-cert")
            .arg(cert)
            .arg("--request-cert-key")
            .arg(key);
    }
    cmd.args(&options.extra);
    // Its own files (reports, caches) stay out of the work tree.
    let scratch = std::env::temp_dir();
    cmd.current_dir(&scratch);
    let out = cmd.output().map_err(|source| HarnessError::Io {
        action: "run",
        path: cli.to_path_buf(),
        source,
    })?;
    Ok(Run {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary() {
        let run = Run {
            success: true,
            stdout: "==== SUMMARY ====\n\nAPI Operations:\n  Selected: 25/25\n  Tested: 25\n\nTest Phases:\n  Examples\n\nTest cases:\n  774 generated, 774 passed\n\nSeed: 1\n".into(),
            stderr: String::new(),
        };
        assert_eq!(run.test_cases(), 774);
        assert_eq!(run.operations_tested(), 25);
        let empty = Run {
            success: true,
            stdout: "nothing".into(),
            stderr: String::new(),
        };
        assert_eq!(empty.test_cases(), 0);
    }
}
