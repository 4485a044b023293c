//! The local trusted-metadata directory of a TUF client.
//!
//! One directory per client (`<data_dir>/ota/tuf` for the gateway, the
//! `--metadata-dir` of `gateway ota tuf-client`) laid out as the TUF
//! conformance suite expects, with unversioned names and the exact bytes the
//! repository served:
//!
//! ```text
//! root.json timestamp.json snapshot.json targets.json <role>.json
//!                   the metadata this client trusts, as persisted by the TUF
//!                   client workflow (a file accepted before a later step
//!                   failed stays accepted, as the specification says)
//! .tough/           tough's own datastore: its copies of timestamp and
//!                   snapshot for the rollback checks, latest_known_time.json
//! .last-good/       the last complete set that verified end to end, from
//!                   which a restarted gateway restores its state offline
//! ```
//!
//! tough writes its datastore with plain (not atomic) writes, so before every
//! load [`MetadataDir::prepare_datastore`] puts the newer of the two copies of
//! `timestamp.json` and `snapshot.json` back into `.tough` (a copy left
//! truncated by a crash would otherwise silently disable tough's rollback
//! check). After every load, [`MetadataDir::commit`] writes the exact bytes
//! of each file tough accepted into the directory (temporary file, fsync,
//! rename); which files were accepted is read from what tough wrote into
//! `.tough`, matched by version and signatures against the bytes recorded
//! while fetching.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::OtaError;
use super::transport::Fetched;

/// A TUF client's local metadata directory.
#[derive(Debug, Clone)]
pub struct MetadataDir {
    dir: PathBuf,
}

const DATASTORE: &str = ".tough";
const LAST_GOOD: &str = ".last-good";
const TOP_LEVEL: [&str; 4] = [
    "root.json",
    "timestamp.json",
    "snapshot.json",
    "targets.json",
];

/// What identifies one signed metadata file: its role type, version and
/// signatures (key id, signature) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    kind: String,
    version: u64,
    signatures: Vec<(String, String)>,
}

fn identity(bytes: &[u8]) -> Option<Identity> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let kind = v.pointer("/signed/_type")?.as_str()?.to_owned();
    let version = v.pointer("/signed/version")?.as_u64()?;
    let mut signatures: Vec<(String, String)> = v
        .get("signatures")?
        .as_array()?
        .iter()
        .filter_map(|s| {
            Some((
                s.get("keyid")?.as_str()?.to_ascii_lowercase(),
                s.get("sig")?.as_str()?.to_ascii_lowercase(),
            ))
        })
        .collect();
    signatures.sort();
    Some(Identity {
        kind,
        version,
        signatures,
    })
}

/// `signed.version` of a metadata file, if it parses.
#[must_use]
pub fn version_of(bytes: &[u8]) -> Option<u64> {
    identity(bytes).map(|i| i.version)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OtaError> {
    tuf_repo::repo::layout::write_atomic(path, bytes).map_err(|e| OtaError::Storage {
        action: "write",
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, OtaError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OtaError::storage("read", path)(e)),
    }
}

fn remove_optional(path: &Path) -> Result<(), OtaError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OtaError::storage("remove", path)(e)),
    }
}

fn create_private_dir(path: &Path) -> Result<(), OtaError> {
    std::fs::create_dir_all(path).map_err(OtaError::storage("create directory", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(OtaError::storage("restrict permissions of", path))?;
    }
    Ok(())
}

impl MetadataDir {
    /// The metadata directory at `dir` (it need not exist yet).
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// tough's datastore directory.
    #[must_use]
    pub fn datastore(&self) -> PathBuf {
        self.dir.join(DATASTORE)
    }

    /// The last complete verified set.
    #[must_use]
    pub fn last_good(&self) -> PathBuf {
        self.dir.join(LAST_GOOD)
    }

    /// Whether a trusted root is in place.
    #[must_use]
    pub fn is_initialised(&self) -> bool {
        self.dir.join("root.json").is_file()
    }

    /// Creates the directory (0700) and puts `trusted_root` in place as
    /// `root.json`, replacing any older root. No checks: the root is
    /// verified when it is first used.
    ///
    /// # Errors
    /// [`OtaError::Storage`] if the directory or file cannot be written.
    pub fn init(&self, trusted_root: &[u8]) -> Result<(), OtaError> {
        create_private_dir(&self.dir)?;
        write_atomic(&self.dir.join("root.json"), trusted_root)
    }

    /// The trusted root to start a load from.
    ///
    /// # Errors
    /// [`OtaError::Storage`] if `root.json` cannot be read (not initialised).
    pub fn trusted_root(&self) -> Result<Vec<u8>, OtaError> {
        let path = self.dir.join("root.json");
        std::fs::read(&path).map_err(OtaError::storage("read the trusted root", path))
    }

    /// Readies tough's datastore for a load (see the module docs).
    ///
    /// # Errors
    /// [`OtaError::Storage`] on a file system failure.
    pub fn prepare_datastore(&self) -> Result<(), OtaError> {
        let store = self.datastore();
        create_private_dir(&store)?;
        for name in ["timestamp.json", "snapshot.json"] {
            let ours = read_optional(&self.dir.join(name))?;
            let theirs = read_optional(&store.join(name))?;
            let ours_v = ours.as_deref().and_then(version_of);
            let theirs_v = theirs.as_deref().and_then(version_of);
            match (ours, theirs_v) {
                (Some(bytes), None) => write_atomic(&store.join(name), &bytes)?,
                (Some(bytes), Some(t)) if ours_v.is_some_and(|o| o > t) => {
                    write_atomic(&store.join(name), &bytes)?;
                }
                (None, None) => remove_optional(&store.join(name))?,
                _ => {}
            }
        }
        Ok(())
    }

    /// After a load (successful or not): writes the exact bytes of every
    /// file tough accepted into the directory under its unversioned name.
    /// `consistent` is the trusted root's `consistent_snapshot`. Returns the
    /// unversioned names written.
    ///
    /// # Errors
    /// [`OtaError::Storage`] on a file system failure.
    pub fn commit(&self, fetched: &[Fetched], consistent: bool) -> Result<Vec<String>, OtaError> {
        let store = self.datastore();
        let mut written = Vec::new();
        for f in fetched {
            let Some(id) = identity(&f.bytes) else {
                continue;
            };
            let Some((tough_name, unversioned)) = names(&f.file, &id, consistent) else {
                continue;
            };
            let Some(accepted) = read_optional(&store.join(&tough_name))? else {
                continue;
            };
            if identity(&accepted).as_ref() != Some(&id) {
                continue;
            }
            let target = self.dir.join(&unversioned);
            if read_optional(&target)?.as_deref() != Some(f.bytes.as_slice()) {
                write_atomic(&target, &f.bytes)?;
            }
            if tough_name != unversioned {
                // tough never reads delegated roles back; keep its store small.
                remove_optional(&store.join(&tough_name))?;
            }
            written.push(unversioned);
        }
        Ok(written)
    }

    /// Replaces the last-good set with the listed files of the directory
    /// (after a load that verified end to end).
    ///
    /// # Errors
    /// [`OtaError::Storage`] on a file system failure.
    pub fn save_last_good(&self, files: &BTreeSet<String>) -> Result<(), OtaError> {
        let dir = self.last_good();
        create_private_dir(&dir)?;
        for name in files {
            let bytes = std::fs::read(self.dir.join(name))
                .map_err(OtaError::storage("read", self.dir.join(name)))?;
            let target = dir.join(name);
            if read_optional(&target)?.as_deref() != Some(bytes.as_slice()) {
                write_atomic(&target, &bytes)?;
            }
        }
        for entry in std::fs::read_dir(&dir).map_err(OtaError::storage("list", &dir))? {
            let entry = entry.map_err(OtaError::storage("list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !files.contains(&name) {
                remove_optional(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Whether a last-good set exists to restore from.
    #[must_use]
    pub fn has_last_good(&self) -> bool {
        self.last_good().join("timestamp.json").is_file()
    }
}

/// (name tough stores the file under in its datastore, unversioned name in
/// the metadata directory) for a fetched file.
fn names(file: &str, id: &Identity, consistent: bool) -> Option<(String, String)> {
    let top = |n: &str| Some((n.to_owned(), n.to_owned()));
    match id.kind.as_str() {
        "root" => top("root.json"),
        "timestamp" => top("timestamp.json"),
        "snapshot" => top("snapshot.json"),
        "targets" => {
            let versioned = format!("{}.targets.json", id.version);
            if file == "targets.json" || file == versioned {
                return top("targets.json");
            }
            let prefix = format!("{}.", id.version);
            let unversioned = if consistent {
                file.strip_prefix(&prefix)?.to_owned()
            } else {
                file.to_owned()
            };
            if TOP_LEVEL.contains(&unversioned.as_str())
                || unversioned.starts_with('.')
                || !unversioned.ends_with(".json")
            {
                return None;
            }
            Some((file.to_owned(), unversioned))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: &str, version: u64, sig: &str) -> Vec<u8> {
        format!(
            r#"{{"signed":{{"_type":"{kind}","version":{version}}},"signatures":[{{"keyid":"aa","sig":"{sig}"}}]}}"#
        )
        .into_bytes()
    }

    /// tough's re-serialisation: same content, other formatting.
    fn reserialised(bytes: &[u8]) -> Vec<u8> {
        let v: Value = serde_json::from_slice(bytes).unwrap();
        serde_json::to_vec_pretty(&v).unwrap()
    }

    #[test]
    fn commit_writes_exact_bytes_of_accepted_files_only() {
        let d = tempfile::tempdir().unwrap();
        let m = MetadataDir::new(d.path().join("tuf"));
        m.init(&meta("root", 1, "r1")).unwrap();
        m.prepare_datastore().unwrap();
        let store = m.datastore();
        let ts = meta("timestamp", 5, "t5");
        let snap = meta("snapshot", 4, "s4");
        let acme = meta("targets", 3, "a3");
        let evil = meta("targets", 9, "e9");
        // tough accepted timestamp and acme, refused the snapshot and "evil".
        std::fs::write(store.join("timestamp.json"), reserialised(&ts)).unwrap();
        std::fs::write(store.join("3.acme.json"), reserialised(&acme)).unwrap();
        std::fs::write(
            store.join("snapshot.json"),
            reserialised(&meta("snapshot", 3, "s3")),
        )
        .unwrap();
        let fetched = vec![
            Fetched {
                file: "timestamp.json".into(),
                bytes: ts.clone(),
            },
            Fetched {
                file: "4.snapshot.json".into(),
                bytes: snap,
            },
            Fetched {
                file: "3.acme.json".into(),
                bytes: acme.clone(),
            },
            Fetched {
                file: "9.globex.json".into(),
                bytes: evil,
            },
        ];
        let written = m.commit(&fetched, true).unwrap();
        assert_eq!(
            written,
            vec!["timestamp.json".to_owned(), "acme.json".to_owned()]
        );
        assert_eq!(std::fs::read(m.path().join("timestamp.json")).unwrap(), ts);
        assert_eq!(std::fs::read(m.path().join("acme.json")).unwrap(), acme);
        assert!(!m.path().join("snapshot.json").exists());
        assert!(!m.path().join("globex.json").exists());
        assert!(!store.join("3.acme.json").exists());
        m.save_last_good(&["root.json", "timestamp.json"].map(str::to_owned).into())
            .unwrap();
        assert!(m.has_last_good());
    }

    #[test]
    fn prepare_restores_a_truncated_or_older_datastore_copy() {
        let d = tempfile::tempdir().unwrap();
        let m = MetadataDir::new(d.path());
        m.init(&meta("root", 1, "r")).unwrap();
        std::fs::write(m.path().join("timestamp.json"), meta("timestamp", 7, "t7")).unwrap();
        m.prepare_datastore().unwrap();
        let store = m.datastore().join("timestamp.json");
        assert_eq!(version_of(&std::fs::read(&store).unwrap()), Some(7));
        // A crash left tough's copy truncated: ours goes back.
        std::fs::write(&store, b"{\"signed\":").unwrap();
        m.prepare_datastore().unwrap();
        assert_eq!(version_of(&std::fs::read(&store).unwrap()), Some(7));
        // tough's copy is newer (accepted, then the load failed): kept.
        std::fs::write(&store, meta("timestamp", 8, "t8")).unwrap();
        m.prepare_datastore().unwrap();
        assert_eq!(version_of(&std::fs::read(&store).unwrap()), Some(8));
    }

    #[test]
    fn names_of_delegated_roles() {
        let id = |v| Identity {
            kind: "targets".into(),
            version: v,
            signatures: vec![],
        };
        assert_eq!(
            names("3.targets.json", &id(3), true),
            Some(("targets.json".into(), "targets.json".into()))
        );
        assert_eq!(
            names("3.acme.json", &id(3), true),
            Some(("3.acme.json".into(), "acme.json".into()))
        );
        assert_eq!(
            names("a%2Fb.json", &id(2), false),
            Some(("a%2Fb.json".into(), "a%2Fb.json".into()))
        );
        assert_eq!(names("4.acme.json", &id(3), true), None);
        assert_eq!(names("3.root.json", &id(3), true), None);
    }
}
