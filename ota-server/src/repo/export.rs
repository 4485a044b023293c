//! `ota-server export`: writes the current generation as static files for a
//! CDN or mirror (mirrors are untrusted by design: clients verify
//! everything against root.json).
//!
//! Output: `metadata/` with every metadata file, and `targets/` holding each
//! image under both consistent-snapshot spellings clients use
//! (`<manufacturer>/<sha256>.<file>` for python-tuf and
//! `<sha256>.<manufacturer>/<file>` for `tough`), hard-linked when possible.

use std::path::Path;

use super::{RepoError, Repository};

/// Exports the current generation into `out` (created if missing).
/// Returns (metadata files, target files) written.
///
/// # Errors
/// [`RepoError::Io`] on any file system failure.
pub fn export(repo: &Repository, out: &Path) -> Result<(usize, usize), RepoError> {
    let state = repo.state();
    let meta = out.join("metadata");
    std::fs::create_dir_all(&meta).map_err(super::io_err("creating", &meta))?;
    let mut n_meta = 0;
    for (name, f) in state.metadata_files() {
        let p = meta.join(name);
        std::fs::write(&p, &f.bytes).map_err(super::io_err("writing", &p))?;
        n_meta += 1;
    }
    let n_targets =
        super::import::copy_tree(&state.gen_dir.join("targets"), &out.join("targets"), true)?;
    Ok((n_meta, n_targets))
}
