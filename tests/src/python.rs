//! The Python interpreter that holds the independent checkers the tests run
//! against Wardgate's output: python-tuf (a second TUF client) and
//! fhir.resources (a FHIR validator).
//!
//! `scripts/setup-test-deps` installs them into `<workspace>/.venv`;
//! `WARDGATE_PYTHON` points elsewhere (CI and `scripts/test` set it).

use std::path::{Path, PathBuf};

use crate::{HarnessError, Result};

/// The environment variable naming the Python to use.
pub const PYTHON_ENV: &str = "WARDGATE_PYTHON";

/// `$WARDGATE_PYTHON`, else `<workspace>/.venv/bin/python`.
///
/// # Errors
/// [`HarnessError::Missing`] when the variable is unset and the venv has not
/// been made.
pub fn python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(PYTHON_ENV) {
        return Ok(PathBuf::from(p));
    }
    let venv = workspace_root().join(".venv/bin/python");
    if venv.exists() {
        Ok(venv)
    } else {
        Err(HarnessError::Missing { program: venv })
    }
}

/// The workspace root: the parent of this crate's directory.
#[must_use]
pub fn workspace_root() -> &'static Path {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here)
}
