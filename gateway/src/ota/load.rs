//! The TUF client workflow over a [`MetadataDir`], shared by the gateway's
//! agent and `gateway ota tuf-client`.
//!
//! [`load_remote`] runs tough's update workflow (root chain, timestamp,
//! snapshot, targets, delegated roles; signatures, thresholds, versions,
//! hashes, lengths, expiry, rollback against the datastore) against a
//! repository, records the exact bytes fetched, and persists what tough
//! accepted into the directory. [`load_local`] re-verifies the last good set
//! from disk with the directory's trusted root, for a restart without
//! network. A refusal becomes [`OtaError::Refresh`] with a
//! [`RefreshFailure`] class and a message in operator words (which file,
//! which versions, when it expired, what to do).

use std::collections::BTreeSet;
use std::error::Error as _;

use tough::error::Error as ToughError;
use tough::schema::RoleType;
use tough::{RepositoryLoader, Transport, TransportErrorKind};
use url::Url;

use super::error::{OtaError, RefreshFailure};
use super::metadata_dir::{version_of, MetadataDir};
use super::transport::{FetchLog, Fetched, LocalTransport, RecordingTransport};
use super::trusted::TrustedMetadata;

/// Where a repository is.
#[derive(Debug, Clone)]
pub struct RepoUrls {
    /// Base URL of the metadata (`.../metadata/`).
    pub metadata: Url,
    /// Base URL of the targets (`.../targets/`).
    pub targets: Url,
}

fn dir_url(url: &Url) -> Url {
    if url.as_str().ends_with('/') {
        return url.clone();
    }
    let mut s = url.as_str().to_owned();
    s.push('/');
    Url::parse(&s).unwrap_or_else(|_| url.clone())
}

impl RepoUrls {
    /// The two base URLs, each made a directory URL (trailing `/`).
    #[must_use]
    pub fn new(metadata: &Url, targets: &Url) -> Self {
        Self {
            metadata: dir_url(metadata),
            targets: dir_url(targets),
        }
    }
}

/// Loads the repository at `urls` through `transport`, starting from the
/// directory's trusted root, and persists what tough accepted.
///
/// # Errors
/// [`OtaError::Refresh`] if anything was refused; [`OtaError::Storage`] if
/// the directory cannot be used.
pub async fn load_remote<T>(
    dir: &MetadataDir,
    transport: T,
    urls: &RepoUrls,
) -> Result<TrustedMetadata, OtaError>
where
    T: Transport + Clone + 'static,
{
    let root = dir.trusted_root()?;
    prepare(dir).await?;
    let log = FetchLog::default();
    let recording = RecordingTransport::new(transport, &urls.metadata, log.clone());
    let loaded = RepositoryLoader::new(&root, urls.metadata.clone(), urls.targets.clone())
        .transport(recording)
        .datastore(dir.datastore())
        .load()
        .await;
    let fetched = log.files();
    let consistent = match &loaded {
        Ok(repo) => repo.root().signed.consistent_snapshot,
        Err(_) => newest_root_consistent(&root, &fetched),
    };
    let written = commit(dir, fetched.clone(), consistent).await?;
    let repo = loaded.map_err(|e| classify(e, &urls.metadata, &log, &root))?;
    if log.overflowed() {
        return Err(refused(
            &urls.metadata,
            RefreshFailure::Tampered,
            format!(
                "the repository served more than {} MiB of metadata in one refresh; refused as an endless-data attack",
                super::transport::MAX_RECORDED_BYTES / (1024 * 1024)
            ),
        ));
    }
    let mut complete: BTreeSet<String> = written.into_iter().collect();
    complete.insert("root.json".to_owned());
    save_last_good(dir, complete).await?;
    Ok(TrustedMetadata::new(repo, &fetched, urls.targets.clone()))
}

/// Re-verifies the last good metadata set kept on disk (no network), with
/// expiry enforced. `targets` is where images will be downloaded from.
///
/// # Errors
/// [`OtaError::NoMetadata`] if there is no stored set; [`OtaError::Refresh`]
/// if it no longer verifies (expired, or signed by keys a newer root
/// removed).
pub async fn load_local(dir: &MetadataDir, targets: &Url) -> Result<TrustedMetadata, OtaError> {
    if !dir.has_last_good() {
        return Err(OtaError::NoMetadata);
    }
    let root = dir.trusted_root()?;
    let base = Url::from_directory_path(dir.last_good()).map_err(|()| OtaError::Storage {
        action: "use",
        path: dir.last_good(),
        source: std::io::Error::other("not an absolute path"),
    })?;
    let log = FetchLog::default();
    let recording =
        RecordingTransport::new(LocalTransport::new(dir.last_good()), &base, log.clone());
    // A throwaway datastore: these files were verified when fetched, and
    // the directory's own datastore keeps guarding the next remote refresh.
    let repo = RepositoryLoader::new(&root, base.clone(), base.clone())
        .transport(recording)
        .load()
        .await
        .map_err(|e| classify(e, &base, &log, &root))?;
    Ok(TrustedMetadata::new(repo, &log.files(), dir_url(targets)))
}

async fn prepare(dir: &MetadataDir) -> Result<(), OtaError> {
    let d = dir.clone();
    OtaError::blocking(move || d.prepare_datastore()).await
}

async fn commit(
    dir: &MetadataDir,
    fetched: Vec<Fetched>,
    consistent: bool,
) -> Result<Vec<String>, OtaError> {
    let d = dir.clone();
    OtaError::blocking(move || d.commit(&fetched, consistent)).await
}

async fn save_last_good(dir: &MetadataDir, files: BTreeSet<String>) -> Result<(), OtaError> {
    let d = dir.clone();
    OtaError::blocking(move || d.save_last_good(&files)).await
}

fn newest_root_consistent(trusted: &[u8], fetched: &[Fetched]) -> bool {
    let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
    let newest = fetched
        .iter()
        .filter(|f| f.file.ends_with(".root.json"))
        .max_by_key(|f| version_of(&f.bytes))
        .and_then(|f| parse(&f.bytes))
        .or_else(|| parse(trusted));
    newest
        .and_then(|v| v.pointer("/signed/consistent_snapshot")?.as_bool())
        .unwrap_or(false)
}

fn refused(url: &Url, failure: RefreshFailure, message: String) -> OtaError {
    OtaError::Refresh {
        url: url.to_string(),
        failure,
        message,
        source: None,
    }
}

/// `signed.expires` of the file a failure is about.
fn expiry_of(file: Option<&Fetched>) -> String {
    file.and_then(|f| serde_json::from_slice::<serde_json::Value>(&f.bytes).ok())
        .and_then(|v| v.pointer("/signed/expires")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "an unknown time".to_owned())
}

fn role_word(role: RoleType) -> &'static str {
    match role {
        RoleType::Root => "root",
        RoleType::Snapshot => "snapshot",
        RoleType::Targets => "targets",
        RoleType::Timestamp => "timestamp",
        RoleType::DelegatedTargets => "delegated targets",
    }
}

/// The delegated role a fetched file name belongs to (`3.acme.json` ->
/// `acme`), `None` for the top-level roles.
fn delegated_role_name(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".json")?;
    let name = match stem.split_once('.') {
        Some((v, rest)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => stem,
    };
    (!["root", "timestamp", "snapshot", "targets"].contains(&name)).then(|| name.to_owned())
}

/// The first tough error in `err`'s source chain that says more than
/// "transport failed" (a hash or size mismatch detected while streaming).
fn inner_tough(err: &ToughError) -> Option<&ToughError> {
    let mut cur = err.source();
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<ToughError>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

/// Turns tough's error into the operator's view of a refused refresh.
#[allow(clippy::too_many_lines)]
fn classify(err: ToughError, url: &Url, log: &FetchLog, trusted_root: &[u8]) -> OtaError {
    use RefreshFailure as F;
    let file = log
        .last_requested()
        .unwrap_or_else(|| "metadata".to_owned());
    let fetched = log.files();
    let last = fetched.iter().rev().find(|f| f.file == file);
    let keep = "the gateway keeps using its last good metadata";
    let effective = inner_tough(&err).unwrap_or(&err);
    let (failure, message) = match effective {
        ToughError::ExpiredMetadata { role, .. } => {
            let (what, when) = if *role == RoleType::Root {
                let newest = fetched
                    .iter()
                    .rfind(|f| f.file.ends_with(".root.json"));
                let root = newest.cloned().unwrap_or(Fetched {
                    file: "root.json".into(),
                    bytes: trusted_root.to_vec(),
                });
                ("root.json".to_owned(), expiry_of(Some(&root)))
            } else {
                (file.clone(), expiry_of(last))
            };
            (
                F::Expired,
                format!(
                    "{what} ({} role) expired at {when}: the repository has stopped re-signing it (a stopped OTA server or a freeze attack); {keep}, but no new rollout step starts until fresh metadata arrives; check the OTA server's timestamp refresher",
                    role_word(*role)
                ),
            )
        }
        ToughError::OlderMetadata {
            role,
            current_version,
            new_version,
            ..
        } => (
            F::Rollback,
            format!(
                "the repository offers {} metadata version {new_version}, older than version {current_version} this gateway already trusts (a rollback attack, or an OTA server restored from an old backup); {keep}; publish newer metadata on the server instead of restoring old files",
                role_word(*role)
            ),
        ),
        ToughError::OlderSnapshotInTimestamp {
            snapshot_new,
            snapshot_old,
            ..
        } => (
            F::Rollback,
            format!(
                "timestamp.json points at snapshot version {snapshot_new}, older than version {snapshot_old} this gateway already trusts (rollback); {keep}"
            ),
        ),
        ToughError::SnapshotRoleRollback {
            role,
            old_role_version,
            new_role_version,
            ..
        } => (
            F::Rollback,
            format!(
                "the snapshot lists {role} version {new_role_version}, older than version {old_role_version} this gateway already trusts (rollback); {keep}"
            ),
        ),
        ToughError::SnapshotRoleMissing { role, .. } => (
            F::Rollback,
            format!("the new snapshot no longer lists {role}, which the trusted one did (rollback); {keep}"),
        ),
        ToughError::VerifyMetadata { role, source, .. } => {
            let message = match delegated_role_name(&file) {
                Some(name) if *role == RoleType::Targets => format!(
                    "{file} (the role delegated to manufacturer {name}) is not signed by the keys delegated to it ({source}): a key that is not delegated, or metadata changed after signing; {keep}"
                ),
                _ => format!(
                    "{file} ({} role) is not signed by the keys the trusted root names for it ({source}): a forged file, or `ota.trusted_root` is not this repository's root; {keep}",
                    role_word(*role)
                ),
            };
            (F::BadSignature, message)
        }
        ToughError::VerifyRoleMetadata { role, source, .. } => (
            F::BadSignature,
            format!("{file} (role {role}) is not signed as its delegation requires ({source}); {keep}"),
        ),
        ToughError::VerifyTrustedMetadata { source, .. } => (
            F::TrustedRoot,
            format!("the trusted root does not verify itself ({source}); put the repository's genuine root.json in `ota.trusted_root`"),
        ),
        ToughError::ParseTrustedMetadata { source, .. } => (
            F::TrustedRoot,
            format!("the trusted root is not TUF root metadata ({source}); put the repository's root.json in `ota.trusted_root`"),
        ),
        ToughError::HashMismatch {
            calculated,
            expected,
            ..
        } => (
            F::Tampered,
            format!(
                "{file} has SHA-256 {calculated}, not the {expected} the signed metadata lists (tampered in transit or on the server); {keep}"
            ),
        ),
        ToughError::MaxSizeExceeded {
            max_size, specifier, ..
        } => (
            F::Tampered,
            format!("{file} is larger than the {max_size} bytes allowed by {specifier}; {keep}"),
        ),
        ToughError::VersionMismatch {
            role,
            fetched: got,
            expected,
            ..
        } => (
            F::Tampered,
            format!(
                "{file} holds {} version {got}, but the snapshot/timestamp lists version {expected}; {keep}",
                role_word(*role)
            ),
        ),
        ToughError::ParseMetadata { role, source, .. } => (
            F::Tampered,
            format!("{file} is not valid {} metadata ({source}); {keep}", role_word(*role)),
        ),
        ToughError::TimestampMetaLength { .. }
        | ToughError::MissingSnapshotMeta { .. }
        | ToughError::SnapshotTargetsMetaMissing { .. }
        | ToughError::MetaMissing { .. }
        | ToughError::DelegatedRolesNotConsistent { .. } => (
            F::Tampered,
            format!("{file} is inconsistent: {effective}; {keep}"),
        ),
        ToughError::InvalidPath { source } => (
            F::OutsideDelegation,
            format!(
                "a role lists a target outside the paths delegated to it ({source}), e.g. a manufacturer signing another manufacturer's file; {keep}"
            ),
        ),
        ToughError::MaxUpdatesExceeded { max_root_updates, .. } => (
            F::Tampered,
            format!("the repository offers more than {max_root_updates} new root versions; {keep}"),
        ),
        ToughError::SystemTimeSteppedBackward {
            sys_time,
            latest_known_time,
            ..
        } => (
            F::Clock,
            format!(
                "the system clock ({sys_time}) is behind the latest time this client already saw ({latest_known_time}); fix the clock (NTP) before OTA can continue; {keep}"
            ),
        ),
        ToughError::Transport { url: u, source, .. } => {
            let reason = source
                .source()
                .map_or_else(|| source.to_string(), ToString::to_string);
            let what = if source.kind() == TransportErrorKind::FileNotFound {
                format!("{u} was not found on the repository")
            } else {
                format!("cannot fetch {u}: {reason}")
            };
            (
                F::Unreachable,
                format!(
                    "{what}; check `ota.server_url`, the network to the OTA server and the TLS files `ota.ca_cert`, `ota.client_cert`, `ota.client_key`; {keep}"
                ),
            )
        }
        ToughError::DatastoreInit { .. }
        | ToughError::DatastoreCreate { .. }
        | ToughError::DatastoreOpen { .. }
        | ToughError::DatastoreRemove { .. }
        | ToughError::DatastoreSerialize { .. } => (
            F::Storage,
            format!("{effective}; check permissions and free space of `storage.data_dir`"),
        ),
        other => (F::Other, format!("{other}; {keep}")),
    };
    OtaError::Refresh {
        url: url.to_string(),
        failure,
        message,
        source: Some(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_delegated_role_of_a_file() {
        assert_eq!(delegated_role_name("3.acme.json").as_deref(), Some("acme"));
        assert_eq!(delegated_role_name("acme.json").as_deref(), Some("acme"));
        assert_eq!(delegated_role_name("7.targets.json"), None);
        assert_eq!(delegated_role_name("timestamp.json"), None);
        assert_eq!(delegated_role_name("metadata"), None);
    }

    #[test]
    fn directory_urls_end_with_a_slash() {
        let u = RepoUrls::new(
            &Url::parse("https://h/m").unwrap(),
            &Url::parse("https://h/t/").unwrap(),
        );
        assert_eq!(u.metadata.as_str(), "https://h/m/");
        assert_eq!(u.targets.as_str(), "https://h/t/");
    }
}
