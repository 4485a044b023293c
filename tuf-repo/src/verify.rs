//! Loading a repository exactly as a TUF client does, through `tough`.
//!
//! [`verify`] starts from a trusted root, walks the root chain, then
//! timestamp, snapshot, top-level targets and every delegated role, with
//! tough checking every signature, threshold, version, hash, length and
//! expiry. With `check_targets` it also downloads every target and lets tough
//! check its length and SHA-256. On expired metadata it reloads without
//! expiry enforcement only to find out which role expired and when, and
//! reports that as [`Error::Expired`].

use std::path::{Path, PathBuf};

use futures::StreamExt;
use tough::{ExpirationEnforcement, IntoVec, RepositoryLoader, Transport};
use url::Url;

use crate::error::{Error, Result};

/// One role's version and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleStatus {
    /// `root`, `timestamp`, `snapshot`, `targets` or a manufacturer.
    pub role: String,
    /// Metadata version.
    pub version: u64,
    /// Expiry.
    pub expires: jiff::Timestamp,
}

impl RoleStatus {
    pub(crate) fn new(role: &str, version: u64, expires: jiff::Timestamp) -> Self {
        Self {
            role: role.to_owned(),
            version,
            expires,
        }
    }
}

impl std::fmt::Display for RoleStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<16} v{:<5} expires {}",
            self.role, self.version, self.expires
        )
    }
}

/// Where the repository is.
#[derive(Debug, Clone)]
pub enum RepoLocation {
    /// A local repository directory (`metadata/`, `targets/`).
    Dir(PathBuf),
    /// A base URL serving `metadata/` and `targets/`.
    Url(Url),
}

impl RepoLocation {
    /// tough's refusal `e` while loading or reading from this location.
    fn refused(&self, e: tough::error::Error) -> Error {
        Error::Verify {
            location: self.describe(),
            source: Box::new(e),
        }
    }

    fn urls(&self) -> Result<(Url, Url)> {
        let base = match self {
            Self::Dir(d) => {
                let abs = std::fs::canonicalize(d).map_err(|e| Error::io("resolving", d, e))?;
                Url::from_directory_path(&abs).map_err(|()| Error::InvalidArgument {
                    what: "repository directory",
                    reason: format!("{} cannot be a file URL", abs.display()),
                })?
            }
            Self::Url(u) => {
                let mut s = u.to_string();
                if !s.ends_with('/') {
                    s.push('/');
                }
                Url::parse(&s).map_err(|e| Error::InvalidArgument {
                    what: "repository URL",
                    reason: e.to_string(),
                })?
            }
        };
        let join = |p: &str| {
            base.join(p).map_err(|e| Error::InvalidArgument {
                what: "repository URL",
                reason: e.to_string(),
            })
        };
        Ok((join("metadata/")?, join("targets/")?))
    }

    fn describe(&self) -> String {
        match self {
            Self::Dir(d) => d.display().to_string(),
            Self::Url(u) => u.to_string(),
        }
    }
}

/// What a successful verification saw.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Every role, top-level first, then manufacturers.
    pub roles: Vec<RoleStatus>,
    /// Every target name and its length.
    pub targets: Vec<(String, u64)>,
    /// Whether every target was downloaded and its hash checked.
    pub targets_checked: bool,
}

/// Reads the trusted root to start from: `root` if given, else the
/// repository's own `metadata/1.root.json` (only for a directory).
pub fn trusted_root(location: &RepoLocation, root: Option<&Path>) -> Result<Vec<u8>> {
    let path = match (root, location) {
        (Some(p), _) => p.to_owned(),
        (None, RepoLocation::Dir(d)) => d.join("metadata").join("1.root.json"),
        (None, RepoLocation::Url(_)) => {
            return Err(Error::InvalidArgument {
                what: "trusted root",
                reason: "verifying a URL needs --root <trusted root.json> (shipped out of band)"
                    .into(),
            })
        }
    };
    std::fs::read(&path).map_err(|e| Error::io("reading trusted root", &path, e))
}

fn resign_command(role: &str) -> &'static str {
    match role {
        "root" => "rotate",
        "timestamp" => "timestamp",
        "snapshot" => "snapshot",
        "targets" => "delegate",
        _ => "release",
    }
}

fn statuses(repo: &tough::Repository) -> Vec<RoleStatus> {
    let (root, timestamp) = (&repo.root().signed, &repo.timestamp().signed);
    let (snapshot, targets) = (&repo.snapshot().signed, &repo.targets().signed);
    let mut roles: Vec<RoleStatus> = [
        ("root", root.version, root.expires),
        ("timestamp", timestamp.version, timestamp.expires),
        ("snapshot", snapshot.version, snapshot.expires),
        ("targets", targets.version, targets.expires),
    ]
    .into_iter()
    .map(|(role, version, expires)| RoleStatus::new(role, version.get(), expires))
    .collect();
    if let Some(d) = &repo.targets().signed.delegations {
        for r in &d.roles {
            if let Some(t) = &r.targets {
                roles.push(RoleStatus::new(
                    &r.name,
                    t.signed.version.get(),
                    t.signed.expires,
                ));
            }
        }
    }
    roles
}

/// Loads and checks the repository at `location` from `trusted_root`
/// through `transport` (use [`tough::FilesystemTransport`] for a directory,
/// [`crate::transport::HttpsTransport`] for HTTPS).
pub async fn verify<T>(
    location: &RepoLocation,
    trusted_root: &[u8],
    transport: T,
    check_targets: bool,
) -> Result<VerifyReport>
where
    T: Transport + Clone + Send + Sync + 'static,
{
    let (meta, targets_url) = location.urls()?;
    let loaded = RepositoryLoader::new(&trusted_root, meta.clone(), targets_url.clone())
        .transport(transport.clone())
        .load()
        .await;
    let repo = match loaded {
        Ok(r) => r,
        Err(tough::error::Error::ExpiredMetadata { role, .. }) => {
            // Find out when: reload without enforcement, report the first expired role.
            let now = jiff::Timestamp::now();
            let lenient = RepositoryLoader::new(&trusted_root, meta, targets_url)
                .transport(transport)
                .expiration_enforcement(ExpirationEnforcement::Unsafe)
                .load()
                .await
                .map_err(|e| location.refused(e))?;
            let expired = statuses(&lenient).into_iter().find(|s| s.expires <= now);
            let (name, at) = expired.map_or_else(
                || (role.to_string(), "an unknown time".to_owned()),
                |s| (s.role, s.expires.to_string()),
            );
            return Err(Error::Expired {
                resign: resign_command(&name),
                role: name,
                expired_at: at,
            });
        }
        Err(e) => return Err(location.refused(e)),
    };
    let roles = statuses(&repo);
    let mut targets = Vec::new();
    for (name, t) in repo.all_targets() {
        targets.push((name.raw().to_owned(), t.length));
    }
    targets.sort();
    if check_targets {
        for (name, _) in &targets {
            // Drain the stream; tough fails it on a length or hash mismatch.
            let mut stream = Box::pin(open_target(&repo, location, name).await?);
            while let Some(chunk) = stream.next().await {
                chunk.map_err(|e| location.refused(e))?;
            }
        }
    }
    Ok(VerifyReport {
        roles,
        targets,
        targets_checked: check_targets,
    })
}

/// The stream of target `name`'s bytes (tough checks length and hash as
/// it is read).
async fn open_target(
    repo: &tough::Repository,
    location: &RepoLocation,
    name: &str,
) -> Result<
    impl futures::Stream<Item = tough::error::Result<bytes::Bytes>>
        + IntoVec<tough::error::Error>
        + Send
        + Sync,
> {
    let tn = tough::TargetName::new(name.to_owned())
        .map_err(|e| Error::tough(format!("target {name}"), e))?;
    repo.read_target(&tn)
        .await
        .map_err(|e| location.refused(e))?
        .ok_or_else(|| Error::TargetNotFound {
            target: name.to_owned(),
        })
}

/// Loads the repository as a client: from `trusted_root` through
/// `transport`, keeping tough's trusted-metadata cache in `datastore` if
/// given. A long-running client (the gateway's OTA agent) should pass a
/// persistent datastore so a restart cannot be rolled back to older
/// metadata; without one tough uses a temporary directory.
pub async fn load_repository<T>(
    location: &RepoLocation,
    trusted_root: &[u8],
    transport: T,
    datastore: Option<&Path>,
) -> Result<tough::Repository>
where
    T: Transport + Send + Sync + 'static,
{
    let (meta, targets_url) = location.urls()?;
    let mut loader = RepositoryLoader::new(&trusted_root, meta, targets_url).transport(transport);
    if let Some(d) = datastore {
        loader = loader.datastore(d);
    }
    loader.load().await.map_err(|e| location.refused(e))
}

/// Loads the repository and returns one target's bytes (checked by tough).
pub async fn fetch_target<T>(
    location: &RepoLocation,
    trusted_root: &[u8],
    transport: T,
    name: &str,
) -> Result<Vec<u8>>
where
    T: Transport + Send + Sync + 'static,
{
    let repo = load_repository(location, trusted_root, transport, None).await?;
    let stream = open_target(&repo, location, name).await?;
    stream.into_vec().await.map_err(|e| location.refused(e))
}
