//! Where things live in a repository directory, and how files are written.
//!
//! ```text
//! <repo>/metadata/1.root.json ... N.root.json, root.json (= newest)
//! <repo>/metadata/timestamp.json
//! <repo>/metadata/N.snapshot.json, snapshot.json (= newest)
//! <repo>/metadata/N.targets.json, targets.json (= newest)
//! <repo>/metadata/N.<manufacturer>.json, <manufacturer>.json (= newest)
//! <repo>/targets/<manufacturer>/<sha256>.<file>    (TUF spec, python-tuf)
//! <repo>/targets/<sha256>.<manufacturer>/<file>    (tough 0.24; a hard link)
//! ```
//!
//! Consistent snapshots are always on, so a client only ever fetches
//! versioned files (plus `timestamp.json` and `N.root.json`) and a new version
//! can be written next to the old one without disturbing clients mid-update.
//! The unversioned copies are for the author's tools and are replaced
//! atomically (write to a temporary file, then rename).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use tough::schema::{Root, Signed};

use crate::error::{Error, Result};

/// A repository directory.
#[derive(Debug, Clone)]
pub struct RepoDir {
    root: PathBuf,
}

impl RepoDir {
    /// Wraps a directory path (it need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `<repo>/metadata`.
    pub fn metadata_dir(&self) -> PathBuf {
        self.root.join("metadata")
    }

    /// `<repo>/targets`.
    pub fn targets_dir(&self) -> PathBuf {
        self.root.join("targets")
    }

    /// `<repo>/metadata/<name>`.
    pub fn metadata_file(&self, name: &str) -> PathBuf {
        self.metadata_dir().join(name)
    }

    /// Creates `metadata/` and `targets/`.
    pub fn create_dirs(&self) -> Result<()> {
        for d in [self.metadata_dir(), self.targets_dir()] {
            std::fs::create_dir_all(&d).map_err(|e| Error::io("creating directory", &d, e))?;
        }
        Ok(())
    }
}

/// Reads the newest root metadata of `repo`.
pub(crate) fn read_root(repo: &RepoDir) -> Result<Signed<Root>> {
    read_metadata(repo, "root.json", "root metadata").map(|(root, _)| root)
}

/// Reads and parses the metadata file `file` of `repo` (with its bytes),
/// naming `what` in the error.
pub(crate) fn read_metadata<T: DeserializeOwned>(
    repo: &RepoDir,
    file: &str,
    what: &str,
) -> Result<(T, Vec<u8>)> {
    read_json(&repo.metadata_file(file), what)
}

/// Like [`read_metadata`], but a file not written yet is `None`.
pub(crate) fn read_optional<T: DeserializeOwned>(
    repo: &RepoDir,
    file: &str,
    what: &str,
) -> Result<Option<T>> {
    let path = repo.metadata_file(file);
    match std::fs::read(&path) {
        Ok(bytes) => parse_json(&bytes, &path, what).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", &path, e)),
    }
}

/// Reads and parses a JSON file, naming `what` in the error.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<(T, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    let value = parse_json(&bytes, path, what)?;
    Ok((value, bytes))
}

/// Parses JSON bytes, naming `what` and `path` in the error.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8], path: &Path, what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// Parses signed metadata from outside and refuses it unless its `signed`
/// part survives a parse and re-serialisation unchanged. Signatures are
/// checked over the re-serialised form (as tough does), so anything the
/// parser drops or normalises (an altered `_type`, an unknown field, `2.0`
/// for `2`) would otherwise pass here yet be refused by stricter clients
/// such as python-tuf, which verify what they read.
pub(crate) fn parse_signed_strict<T>(
    bytes: &[u8],
    path: &Path,
    what: &str,
) -> Result<tough::schema::Signed<T>>
where
    T: DeserializeOwned + serde::Serialize,
{
    let signed: tough::schema::Signed<T> = parse_json(bytes, path, what)?;
    let raw: serde_json::Value = parse_json(bytes, path, what)?;
    let again = serde_json::to_value(&signed.signed).map_err(|e| Error::Serialize {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    if raw.get("signed") != Some(&again) {
        return Err(Error::Json {
            what: what.to_owned(),
            path: path.to_owned(),
            source: <serde_json::Error as serde::de::Error>::custom(
                "the signed part holds fields or values that do not survive parsing (e.g. a wrong _type); sign it again with `tuf-repo release`",
            ),
        });
    }
    Ok(signed)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io("creating temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io("writing", path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into place", path, e.error))?;
    Ok(())
}

/// Writes a new versioned metadata file (`N.<role>.json`), refusing to
/// replace an existing version with different bytes, then atomically
/// replaces the unversioned copy (`<role>.json`).
pub(crate) fn write_versioned(
    repo: &RepoDir,
    role: &str,
    version: u64,
    bytes: &[u8],
) -> Result<()> {
    let versioned = repo.metadata_file(&format!("{version}.{role}.json"));
    match std::fs::read(&versioned) {
        Ok(existing) if existing == bytes => {}
        Ok(_) => {
            return Err(Error::MetadataRollback {
                role: role.to_owned(),
                published: version,
                offered: version,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_atomic(&versioned, bytes)?,
        Err(e) => return Err(Error::io("reading", &versioned, e)),
    }
    write_atomic(&repo.metadata_file(&format!("{role}.json")), bytes)
}

/// Copies a repository tree into `out` (which must be empty or absent):
/// metadata files are copied, target images hard-linked (copied when the
/// file system refuses links).
pub(crate) fn copy_repo(from: &RepoDir, out: &RepoDir) -> Result<()> {
    out.create_dirs()?;
    if let Ok(mut entries) = std::fs::read_dir(out.metadata_dir()) {
        if entries.next().is_some() {
            return Err(Error::InvalidArgument {
                what: "output directory",
                reason: format!(
                    "{} is not empty; give a fresh directory",
                    out.path().display()
                ),
            });
        }
    }
    copy_tree(&from.metadata_dir(), &out.metadata_dir(), false)?;
    copy_tree(&from.targets_dir(), &out.targets_dir(), true)
}

fn copy_tree(from: &Path, to: &Path, link: bool) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io("creating directory", to, e))?;
    let entries = match std::fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", from, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ft = entry
            .file_type()
            .map_err(|e| Error::io("inspecting", &src, e))?;
        if ft.is_dir() {
            copy_tree(&src, &dst, link)?;
        } else if ft.is_file() {
            if link {
                link_or_copy(&src, &dst)?;
            } else {
                std::fs::copy(&src, &dst).map_err(|e| Error::io("copying", &src, e))?;
            }
        }
        // Symlinks and other file types are never written by us; skip them.
    }
    Ok(())
}

/// Hard-links `src` to `dst`, or copies it when linking is not possible.
pub(crate) fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating directory", parent, e))?;
    }
    if dst.exists() {
        return Ok(());
    }
    if std::fs::hard_link(src, dst).is_err() {
        std::fs::copy(src, dst).map_err(|e| Error::io("copying", src, e))?;
    }
    Ok(())
}
