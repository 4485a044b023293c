//! The TUF repository on disk, its in-memory view, and atomic publishing.
//!
//! Authoring (upload checks, snapshot and timestamp signing, image
//! placement) is `tuf-repo`'s; this module adds what a long-running server
//! needs around it: generations, the atomic swap, and an in-memory view.
//! Layout under `<data_dir>/repo`:
//!
//! ```text
//! current -> gen/0000000007      symlink, swapped atomically with rename(2)
//! gen/0000000007/                one complete tuf-repo RepoDir:
//!   metadata/                    N.root.json, N.targets.json, N.<m>.json,
//!                                N.snapshot.json, timestamp.json (+ copies)
//!   targets/                     images under both consistent names, hard
//!                                links shared between generations
//! tmp/                           uploads and staging generations
//! ```
//!
//! A release ([`Repository::publish_release`]) is checked by
//! `tuf_repo::check_upload` (plus [`release`]'s route checks), written as the
//! next generation into `tmp/` by `tuf_repo::publish`, fsynced, verified
//! again by [`RepoState`], renamed into `gen/`, and only then does `current`
//! move. A client therefore never sees metadata naming an image that is not
//! in place, and a crash at any point leaves the previous generation served
//! on restart. The timestamp refresh ([`Repository::refresh_timestamp`])
//! rewrites `timestamp.json` of the current generation with
//! `tuf_repo::refresh_timestamp` (temp file, fsync, rename).
//!
//! Readers take an `Arc` of the current [`RepoState`]: metadata is served from
//! memory, targets from the generation's `targets/` after checking that the
//! requested name and digest are published. The server holds only the
//! snapshot and timestamp keys; manufacturer keys never reach it.

pub mod export;
pub mod import;
pub mod release;
pub mod request;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tough::schema::{Metafile, Root, Signed, Snapshot, Targets, Timestamp};

use tuf_repo::TargetPath;

pub use release::{ReleaseError, StagedImage};
pub use request::{TargetRequest, TargetRequestError};
pub use tuf_repo::SigningKey;

/// Failures of the repository store.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// File system failure.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A metadata file is missing or does not verify.
    #[error("repository metadata {file} is invalid: {reason}")]
    Metadata {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The repository has not been initialised.
    #[error("no TUF repository in {0}; run `ota-server init --config <file> --from <tuf-repo output>` first")]
    NotInitialised(PathBuf),
    /// A key could not be loaded or does not match root.json.
    #[error("{what}: {reason}")]
    Key {
        /// Which key.
        what: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// JSON (de)serialization failed.
    #[error("cannot serialize {what}: {reason}")]
    Json {
        /// What.
        what: String,
        /// The serializer's message.
        reason: String,
    },
    /// A release was refused.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// A published target's name is not a valid target name.
    #[error("published target name refused: {0}")]
    Name(#[source] tuf_repo::Error),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Join(String),
}

pub(crate) fn io_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> RepoError {
    let path = path.to_owned();
    move |source| RepoError::Io {
        action,
        path,
        source,
    }
}

fn meta_err(file: &str, reason: impl ToString) -> RepoError {
    RepoError::Metadata {
        file: file.to_owned(),
        reason: reason.to_string(),
    }
}

/// A metadata file held in memory with its strong `ETag`.
#[derive(Debug, Clone)]
pub struct MetaFile {
    /// The exact bytes served.
    pub bytes: Bytes,
    /// Quoted hex SHA-256 of the bytes.
    pub etag: String,
}

impl MetaFile {
    fn new(bytes: Vec<u8>) -> Self {
        let etag = format!("\"{}\"", hex::encode(Sha256::digest(&bytes)));
        Self {
            bytes: bytes.into(),
            etag,
        }
    }
}

/// A published target image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTarget {
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Length in bytes.
    pub length: u64,
    /// The `custom` object of the target, as signed by the manufacturer.
    pub custom: serde_json::Value,
    /// Version of the delegated role that lists it.
    pub role_version: u64,
    /// The image file (in the generation's `targets/`).
    pub file: PathBuf,
}

/// One consistent view of the repository (a generation).
#[derive(Debug, Clone)]
pub struct RepoState {
    /// Generation number (the `gen/` directory name).
    pub generation: u64,
    /// The generation's directory (a `tuf-repo` repository).
    pub gen_dir: PathBuf,
    files: HashMap<String, MetaFile>,
    /// Latest root.
    pub root: Signed<Root>,
    /// Top-level targets (delegations only).
    pub targets: Signed<Targets>,
    /// Delegated roles by name, with their metadata version.
    pub roles: BTreeMap<String, Signed<Targets>>,
    /// Current snapshot.
    pub snapshot: Signed<Snapshot>,
    /// Current timestamp.
    pub timestamp: Signed<Timestamp>,
    /// Published targets.
    pub published: BTreeMap<TargetPath, PublishedTarget>,
}

impl RepoState {
    /// A metadata file by its name as requested under `metadata/`.
    #[must_use]
    pub fn metadata(&self, name: &str) -> Option<&MetaFile> {
        self.files.get(name)
    }

    /// All metadata file names and contents of this generation.
    pub fn metadata_files(&self) -> impl Iterator<Item = (&String, &MetaFile)> {
        self.files.iter()
    }

    /// The published target a request names, if its digest matches.
    #[must_use]
    pub fn resolve_target(&self, req: &TargetRequest) -> Option<&PublishedTarget> {
        self.published
            .get(&req.target)
            .filter(|p| p.sha256 == req.sha256_hex)
    }

    /// When the current timestamp expires.
    #[must_use]
    pub fn timestamp_expires(&self) -> jiff::Timestamp {
        self.timestamp.signed.expires
    }

    /// Parses and verifies a complete metadata set read from a generation.
    fn from_files(
        generation: u64,
        gen_dir: &Path,
        files: HashMap<String, MetaFile>,
    ) -> Result<Self, RepoError> {
        let parse = |name: &str| -> Result<&MetaFile, RepoError> {
            files.get(name).ok_or_else(|| meta_err(name, "missing"))
        };
        let root_name = files
            .keys()
            .filter_map(|k| {
                k.strip_suffix(".root.json")
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .max()
            .map(|v| format!("{v}.root.json"))
            .ok_or_else(|| meta_err("N.root.json", "no root metadata"))?;
        let root: Signed<Root> = serde_json::from_slice(&parse(&root_name)?.bytes)
            .map_err(|e| meta_err(&root_name, e))?;
        root.signed
            .verify_role(&root)
            .map_err(|e| meta_err(&root_name, e))?;
        let timestamp: Signed<Timestamp> = serde_json::from_slice(&parse("timestamp.json")?.bytes)
            .map_err(|e| meta_err("timestamp.json", e))?;
        root.signed
            .verify_role(&timestamp)
            .map_err(|e| meta_err("timestamp.json", e))?;
        let snap_meta = timestamp
            .signed
            .meta
            .get("snapshot.json")
            .ok_or_else(|| meta_err("timestamp.json", "names no snapshot.json"))?;
        let snap_name = format!("{}.snapshot.json", snap_meta.version);
        let snapshot: Signed<Snapshot> = listed_role(&files, &snap_name, snap_meta)?;
        root.signed
            .verify_role(&snapshot)
            .map_err(|e| meta_err(&snap_name, e))?;
        let t_meta = snapshot
            .signed
            .meta
            .get("targets.json")
            .ok_or_else(|| meta_err(&snap_name, "names no targets.json"))?;
        let t_name = format!("{}.targets.json", t_meta.version);
        let targets: Signed<Targets> = listed_role(&files, &t_name, t_meta)?;
        root.signed
            .verify_role(&targets)
            .map_err(|e| meta_err(&t_name, e))?;
        let mut roles = BTreeMap::new();
        let mut published = BTreeMap::new();
        if let Some(delegations) = &targets.signed.delegations {
            for role in &delegations.roles {
                let key = format!("{}.json", role.name);
                let Some(m) = snapshot.signed.meta.get(&key) else {
                    continue;
                };
                let name = format!("{}.{}.json", m.version, role.name);
                let signed: Signed<Targets> = listed_role(&files, &name, m)?;
                delegations
                    .verify_role(&signed, &role.name)
                    .map_err(|e| meta_err(&name, e))?;
                if signed.signed.version.get() != m.version.get() {
                    return Err(meta_err(&name, "version differs from snapshot"));
                }
                for (tname, t) in &signed.signed.targets {
                    let path = TargetPath::new(tname.raw()).map_err(RepoError::Name)?;
                    let sha256 = hex::encode(&t.hashes.sha256);
                    let file = gen_dir
                        .join("targets")
                        .join(path.consistent_file_spec(&sha256));
                    published.insert(
                        path,
                        PublishedTarget {
                            sha256,
                            length: t.length,
                            custom: serde_json::to_value(&t.custom).unwrap_or_default(),
                            role_version: signed.signed.version.get(),
                            file,
                        },
                    );
                }
                roles.insert(role.name.clone(), signed);
            }
        }
        Ok(Self {
            generation,
            gen_dir: gen_dir.to_owned(),
            files,
            root,
            targets,
            roles,
            snapshot,
            timestamp,
            published,
        })
    }
}

/// The role file `name` that the listing `m` (in the timestamp or the
/// snapshot) names: present, of the listed length and hash, and parsed.
fn listed_role<T: serde::de::DeserializeOwned>(
    files: &HashMap<String, MetaFile>,
    name: &str,
    m: &Metafile,
) -> Result<Signed<T>, RepoError> {
    let file = files.get(name).ok_or_else(|| meta_err(name, "missing"))?;
    check_metafile(name, m, &file.bytes)?;
    serde_json::from_slice(&file.bytes).map_err(|e| meta_err(name, e))
}

fn check_metafile(name: &str, m: &Metafile, bytes: &[u8]) -> Result<(), RepoError> {
    if let Some(len) = m.length {
        if len != bytes.len() as u64 {
            return Err(meta_err(name, "length differs from the listing metadata"));
        }
    }
    if let Some(h) = &m.hashes {
        if Sha256::digest(bytes).as_slice() != h.sha256.as_ref() {
            return Err(meta_err(name, "SHA-256 differs from the listing metadata"));
        }
    }
    Ok(())
}

/// Lifetimes of re-signed metadata.
#[derive(Debug, Clone, Copy)]
pub struct Expiries {
    /// Snapshot lifetime.
    pub snapshot: Duration,
    /// Timestamp lifetime.
    pub timestamp: Duration,
}

/// The server's two online keys.
#[derive(Debug, Clone)]
pub struct OnlineKeys {
    /// Signs snapshot.json.
    pub snapshot: SigningKey,
    /// Signs timestamp.json.
    pub timestamp: SigningKey,
}

impl OnlineKeys {
    /// Loads both key files (`tuf-repo` key files, unencrypted: the server
    /// signs unattended; protect them with file permissions).
    ///
    /// # Errors
    /// [`RepoError::Key`] naming the config field and what to do.
    pub fn load(snapshot: &Path, timestamp: &Path) -> Result<Self, RepoError> {
        let load = |p: &Path, field: &str| {
            SigningKey::load(p, None).map_err(|e| RepoError::Key {
                what: format!("{field} ({})", p.display()),
                reason: format!(
                    "{e}; create it with `tuf-repo keygen` (no passphrase for online keys)"
                ),
            })
        };
        Ok(Self {
            snapshot: load(snapshot, "tuf.snapshot_key")?,
            timestamp: load(timestamp, "tuf.timestamp_key")?,
        })
    }

    fn tuf_repo(&self) -> tuf_repo::OnlineKeys {
        tuf_repo::OnlineKeys {
            snapshot: vec![self.snapshot.clone()],
            timestamp: vec![self.timestamp.clone()],
        }
    }
}

/// The repository: on-disk store plus the current in-memory view.
#[derive(Debug)]
pub struct Repository {
    dir: PathBuf,
    keys: OnlineKeys,
    expiries: Expiries,
    state: RwLock<Arc<RepoState>>,
    writer: tokio::sync::Mutex<()>,
}

pub(crate) fn gen_name(n: u64) -> String {
    format!("{n:010}")
}

fn tuf_err(what: &str, e: &tuf_repo::Error) -> RepoError {
    RepoError::Metadata {
        file: what.to_owned(),
        reason: e.to_string(),
    }
}

impl Repository {
    /// The repository directory for a data directory.
    #[must_use]
    pub fn dir_in(data_dir: &Path) -> PathBuf {
        data_dir.join("repo")
    }

    /// Opens the repository in `dir`, cleans `tmp/`, prunes old generations,
    /// verifies the current one and checks that the online keys are the ones
    /// root.json names for snapshot and timestamp.
    ///
    /// # Errors
    /// [`RepoError`] when the repository is missing, does not verify, or the
    /// keys do not match.
    pub fn open(dir: &Path, keys: OnlineKeys, expiries: Expiries) -> Result<Self, RepoError> {
        let current = dir.join("current");
        let target =
            std::fs::read_link(&current).map_err(|_| RepoError::NotInitialised(dir.to_owned()))?;
        let generation = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| meta_err("current", "symlink does not point at gen/<number>"))?;
        let tmp = dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err("cleaning", &tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
        prune_generations(dir, generation);
        let state = load_generation(&dir.join("gen").join(gen_name(generation)), generation)?;
        check_online_key(
            &state.root,
            &keys.snapshot,
            tough::schema::RoleType::Snapshot,
        )?;
        check_online_key(
            &state.root,
            &keys.timestamp,
            tough::schema::RoleType::Timestamp,
        )?;
        for (path, t) in &state.published {
            let len = std::fs::metadata(&t.file)
                .map_err(io_err("checking target", &t.file))?
                .len();
            if len != t.length {
                return Err(meta_err(
                    &path.to_string(),
                    format!(
                        "image {} has {len} bytes, metadata says {}",
                        t.file.display(),
                        t.length
                    ),
                ));
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            keys,
            expiries,
            state: RwLock::new(Arc::new(state)),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// The current view.
    #[must_use]
    pub fn state(&self) -> Arc<RepoState> {
        match self.state.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    fn set_state(&self, s: RepoState) {
        match self.state.write() {
            Ok(mut g) => *g = Arc::new(s),
            Err(p) => *p.into_inner() = Arc::new(s),
        }
    }

    /// Directory for temporary uploads (same file system as `gen/`).
    #[must_use]
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Checks a release and, if every check passes, publishes it atomically
    /// and re-signs snapshot and timestamp. On refusal the repository is
    /// untouched and the staged image is deleted.
    ///
    /// # Errors
    /// [`RepoError::Release`] with the refusal, or an I/O fault.
    pub async fn publish_release(
        &self,
        candidate: release::Candidate,
    ) -> Result<release::Published, RepoError> {
        let _guard = self.writer.lock().await;
        let staged_dir = candidate.image.path.parent().map(Path::to_owned);
        let r = self.publish_locked(&candidate).await;
        if let Some(d) = staged_dir {
            if d.starts_with(self.tmp_dir()) {
                let _ = tokio::fs::remove_dir_all(&d).await;
            }
        }
        r
    }

    async fn publish_locked(
        &self,
        candidate: &release::Candidate,
    ) -> Result<release::Published, RepoError> {
        let cur = self.state();
        let cur_dir = tuf_repo::RepoDir::new(&cur.gen_dir);
        let checked = release::check(&cur_dir, candidate).await?;
        let next = cur.generation + 1;
        let staging = self
            .dir
            .join("tmp")
            .join(format!("gen-{next}-{}", uuid::Uuid::new_v4()));
        let written = tuf_repo::publish(
            &cur_dir,
            &checked,
            &self.keys.tuf_repo(),
            self.expiries.snapshot,
            self.expiries.timestamp,
            &staging,
        )
        .await
        .map_err(|e| tuf_err("new repository version", &e));
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                return Err(e);
            }
        };
        let dir = self.dir.clone();
        let state = tokio::task::spawn_blocking(move || commit_generation(&dir, &staging, next))
            .await
            .map_err(|e| RepoError::Join(e.to_string()))??;
        let published = release::Published {
            target: candidate.target.clone(),
            sha256: candidate.image.sha256.clone(),
            length: candidate.image.length,
            role_version: written.role.version,
            snapshot_version: state.snapshot.signed.version.get(),
        };
        self.set_state(state);
        Ok(published)
    }

    /// Re-signs `timestamp.json` with a new version and expiry. Returns the
    /// new expiry.
    ///
    /// # Errors
    /// [`RepoError`] on an I/O or signing failure (the old timestamp stays).
    pub async fn refresh_timestamp(&self) -> Result<jiff::Timestamp, RepoError> {
        let _guard = self.writer.lock().await;
        let cur = self.state();
        tuf_repo::refresh_timestamp(
            &tuf_repo::RepoDir::new(&cur.gen_dir),
            std::slice::from_ref(&self.keys.timestamp),
            self.expiries.timestamp,
        )
        .await
        .map_err(|e| tuf_err("timestamp.json", &e))?;
        let path = cur.gen_dir.join("metadata").join("timestamp.json");
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(io_err("reading", &path))?;
        let timestamp: Signed<Timestamp> =
            serde_json::from_slice(&bytes).map_err(|e| meta_err("timestamp.json", e))?;
        cur.root
            .signed
            .verify_role(&timestamp)
            .map_err(|e| meta_err("timestamp.json", e))?;
        let mut next = (*cur).clone();
        next.timestamp = timestamp;
        next.files
            .insert("timestamp.json".into(), MetaFile::new(bytes));
        let exp = next.timestamp.signed.expires;
        self.set_state(next);
        Ok(exp)
    }
}

/// Fsyncs a staged generation, verifies it, renames it into `gen/` and
/// swaps `current` to it.
pub(crate) fn commit_generation(
    dir: &Path,
    staging: &Path,
    n: u64,
) -> Result<RepoState, RepoError> {
    sync_tree(staging)?;
    let verified = load_generation(staging, n)?;
    drop(verified);
    let gen_parent = dir.join("gen");
    std::fs::create_dir_all(&gen_parent).map_err(io_err("creating", &gen_parent))?;
    let gen_dir = gen_parent.join(gen_name(n));
    std::fs::rename(staging, &gen_dir).map_err(io_err("renaming generation", &gen_dir))?;
    fsync_dir(&gen_parent)?;
    let state = load_generation(&gen_dir, n)?;
    swap_current(dir, n)?;
    prune_generations(dir, n);
    Ok(state)
}

/// Fsyncs every file and directory under `root` (metadata is small; image
/// links point at data that was fsynced when it was received).
fn sync_tree(root: &Path) -> Result<(), RepoError> {
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io_err("reading", &d))? {
            let e = e.map_err(io_err("reading", &d))?;
            let p = e.path();
            let ft = e.file_type().map_err(io_err("reading", &p))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && d.ends_with("metadata") {
                std::fs::File::open(&p)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err("syncing", &p))?;
            }
        }
        fsync_dir(&d)?;
    }
    Ok(())
}

fn check_online_key(
    root: &Signed<Root>,
    key: &SigningKey,
    role: tough::schema::RoleType,
) -> Result<(), RepoError> {
    let keys = root.signed.roles.get(&role).ok_or_else(|| RepoError::Key {
        what: format!("{role} key"),
        reason: "root.json has no such role".into(),
    })?;
    if !keys.keyids.iter().any(|k| hex::encode(k) == key.key_id()) {
        return Err(RepoError::Key {
            what: format!("{role} key {}", key.key_id()),
            reason: format!(
                "root.json does not list it for the {role} role; configure the key the root was signed with, or rotate root with `tuf-repo rotate`"
            ),
        });
    }
    if keys.threshold.get() != 1 {
        return Err(RepoError::Key {
            what: format!("{role} key"),
            reason: format!(
                "root.json requires {} {role} signatures; the server holds one online key, so set the {role} threshold to 1",
                keys.threshold
            ),
        });
    }
    Ok(())
}

/// Reads and verifies the generation in `gen_dir`.
pub(crate) fn load_generation(gen_dir: &Path, n: u64) -> Result<RepoState, RepoError> {
    let meta = gen_dir.join("metadata");
    let mut files = HashMap::new();
    for e in std::fs::read_dir(&meta).map_err(io_err("reading", &meta))? {
        let e = e.map_err(io_err("reading", &meta))?;
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let bytes = std::fs::read(e.path()).map_err(io_err("reading", &e.path()))?;
        files.insert(name, MetaFile::new(bytes));
    }
    RepoState::from_files(n, gen_dir, files)
}

/// Fsyncs a directory so renames in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), RepoError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing directory", dir))
}

/// Points `dir/current` at `gen/<n>` with one rename.
pub(crate) fn swap_current(dir: &Path, n: u64) -> Result<(), RepoError> {
    let link_tmp = dir
        .join("tmp")
        .join(format!("current-{}", uuid::Uuid::new_v4()));
    let target = Path::new("gen").join(gen_name(n));
    std::os::unix::fs::symlink(&target, &link_tmp).map_err(io_err("linking", &link_tmp))?;
    let current = dir.join("current");
    std::fs::rename(&link_tmp, &current).map_err(io_err("swapping", &current))?;
    fsync_dir(dir)
}

/// Deletes generations older than `current - 2` and any newer than
/// `current` (left by a crash before the swap).
fn prune_generations(dir: &Path, current: u64) {
    let gen = dir.join("gen");
    let Ok(rd) = std::fs::read_dir(&gen) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok());
        if let Some(n) = n {
            if n + 2 < current || n > current {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!(path = %e.path().display(), error = %err, "cannot prune old repository generation");
                }
            }
        }
    }
}
