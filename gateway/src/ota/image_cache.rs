//! The ward's image cache: one verified copy of each firmware image,
//! however many devices install it, so central egress for a ward is one
//! image per release. The image server for devices reads from here.
//!
//! Layout, content-addressed by the image's SHA-256:
//!
//! ```text
//! <data_dir>/ota/images/<sha256>           complete, verified images
//! <data_dir>/ota/images/.partial/<sha256>  downloads in progress (resumed
//!                                          with HTTP Range, also after a
//!                                          restart)
//! ```
//!
//! Downloads use [`super::download`] (why not tough's `read_target`: it
//! cannot resume; the same HTTPS client is used and length and SHA-256 are
//! checked against the target entry tough verified). [`ImageCache::fetch`]
//! downloads a target once; concurrent and later calls for the same image
//! wait for it and get the cached copy. [`ImageCache::path_for`] returns
//! only complete images whose SHA-256 was checked, and only while the file
//! still has the size and modification time it had when checked;
//! [`ImageCache::verify`] hashes it again (the rollout does when a device
//! reports that the image it downloaded failed its check). A verified image
//! whose file changed since is hashed again by the next
//! [`ImageCache::fetch`] (every rollout round). At start-up every cached
//! image is hashed again. A corrupt one is deleted, audited
//! (`ota.image.verify`, refused, with what triggered the check) and counted
//! (`wardgate_ota_image_corrupt_total`), and the next fetch downloads it
//! again.
//! [`ImageCache::remove_unused`] deletes what no campaign needs any more.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Semaphore;

use super::download::{download, hash_file, Downloaded, Expected};
use super::error::OtaError;
use super::metrics::OtaMetrics;
use super::trusted::TargetInfo;
use crate::audit::{AuditEvent, AuditLog, Outcome};

const PARTIAL: &str = ".partial";

/// A checked SHA-256 digest: 64 lowercase hex characters (made safe once,
/// so it can name a file).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ImageDigest(String);

impl ImageDigest {
    /// Parses a hex SHA-256 (either case).
    ///
    /// # Errors
    /// [`OtaError::Target`] if it is not 64 hex characters.
    pub fn parse(text: &str) -> Result<Self, OtaError> {
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(OtaError::Target {
                name: text.chars().take(80).collect(),
                reason: "not a SHA-256 digest (64 hex characters)".into(),
            })
        }
    }

    /// The lowercase hex text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ImageDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A complete, verified image in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedImage {
    /// Its SHA-256.
    pub sha256: ImageDigest,
    /// Its length in bytes.
    pub length: u64,
    /// The file.
    pub path: PathBuf,
}

/// How [`ImageCache::fetch`] got the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// It was already cached; nothing was downloaded.
    Cached,
    /// It was downloaded now (possibly resuming a partial file).
    Downloaded(Downloaded),
}

/// Settings of the cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Time allowed for one download request.
    pub download_timeout: Duration,
    /// Downloads running at once.
    pub max_parallel_downloads: usize,
}

impl From<&crate::config::OtaConfig> for CacheSettings {
    fn from(c: &crate::config::OtaConfig) -> Self {
        Self {
            download_timeout: c.download_timeout,
            max_parallel_downloads: c.max_parallel_downloads,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    length: u64,
    modified: Option<SystemTime>,
}

fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    Stamp {
        length: meta.len(),
        modified: meta.modified().ok(),
    }
}

/// The ward's image cache. Share it as `Arc<ImageCache>`.
#[derive(Debug)]
pub struct ImageCache {
    dir: PathBuf,
    partial_dir: PathBuf,
    client: reqwest::Client,
    settings: CacheSettings,
    verified: Mutex<HashMap<ImageDigest, Stamp>>,
    locks: Mutex<HashMap<ImageDigest, Arc<tokio::sync::Mutex<()>>>>,
    permits: Semaphore,
    audit: AuditLog,
    metrics: OtaMetrics,
}

/// [`crate::context::create_private_dir`] with its error as an
/// [`OtaError::Storage`] (also used for the TUF client's `ota` folder).
pub(super) fn create_private_dir(path: &Path) -> Result<(), OtaError> {
    crate::context::create_private_dir(path).map_err(|e| OtaError::Storage {
        action: "create",
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })
}

impl ImageCache {
    /// Opens the cache in `<data_dir>/ota/images`, hashing every cached
    /// image again (corrupt ones are deleted and audited). `client` is the
    /// OTA server's HTTPS client ([`super::TufClient::http_client`]).
    ///
    /// # Errors
    /// [`OtaError::Storage`] if the directory cannot be used.
    pub async fn open(
        data_dir: &Path,
        client: reqwest::Client,
        settings: CacheSettings,
        audit: AuditLog,
        metrics: OtaMetrics,
    ) -> Result<Self, OtaError> {
        let ota = data_dir.join("ota");
        let dir = ota.join("images");
        let partial_dir = dir.join(PARTIAL);
        {
            let (ota, dir, partial_dir) = (ota.clone(), dir.clone(), partial_dir.clone());
            OtaError::blocking(move || {
                create_private_dir(&ota)?;
                create_private_dir(&dir)?;
                create_private_dir(&partial_dir)
            })
            .await?;
        }
        let cache = Self {
            dir,
            partial_dir,
            client,
            settings,
            verified: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            permits: Semaphore::new(settings.max_parallel_downloads.max(1)),
            audit,
            metrics,
        };
        cache.check_all().await?;
        Ok(cache)
    }

    async fn check_all(&self) -> Result<(), OtaError> {
        let mut entries = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(OtaError::storage("list", &self.dir))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(OtaError::storage("list", &self.dir))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(sha) = ImageDigest::parse(&name) else {
                continue;
            };
            if name != sha.as_str() || !entry.path().is_file() {
                continue;
            }
            match self.check(&sha, "hashed again at start-up").await {
                // Corrupt ones are deleted and audited by `check`; one that
                // vanished meanwhile is simply not cached.
                Ok(_) | Err(OtaError::Tampered { .. } | OtaError::Target { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.update_gauge();
        Ok(())
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<ImageDigest, Stamp>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_for(&self, sha: &ImageDigest) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(locks.entry(sha.clone()).or_default())
    }

    fn update_gauge(&self) {
        let n = i64::try_from(self.verified().len()).unwrap_or(i64::MAX);
        self.metrics.cached_images.set(n);
    }

    fn image_path(&self, sha: &ImageDigest) -> PathBuf {
        self.dir.join(sha.as_str())
    }

    async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.audit.append_async(event).await {
            tracing::error!(error = %e, "cannot write an OTA image audit row");
        }
    }

    /// Hashes a cached image; deletes it if it does not match its name.
    /// `trigger` says why it was hashed (kept in the audit row).
    async fn check(&self, sha: &ImageDigest, trigger: &str) -> Result<CachedImage, OtaError> {
        let path = self.image_path(sha);
        let (actual, length) = match hash_file(&path).await {
            Ok(v) => v,
            Err(OtaError::Storage { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                self.verified().remove(sha);
                return Err(OtaError::Target {
                    name: sha.to_string(),
                    reason: "not in the image cache".into(),
                });
            }
            Err(e) => return Err(e),
        };
        if actual == sha.as_str() {
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(OtaError::storage("stat", &path))?;
            self.verified().insert(sha.clone(), stamp_of(&meta));
            return Ok(CachedImage {
                sha256: sha.clone(),
                length,
                path,
            });
        }
        self.verified().remove(sha);
        let _ = tokio::fs::remove_file(&path).await;
        self.metrics.corrupt.inc();
        self.update_gauge();
        let reason = format!("its SHA-256 is now {actual}");
        tracing::error!(sha256 = %sha, actual, trigger, "cached image is corrupt (tampered with or damaged on disk); deleted it, it is downloaded again from the OTA server; inspect the gateway host's data dir");
        self.audit(
            AuditEvent::new(
                "gateway",
                "ota.image.verify",
                sha.as_str(),
                Outcome::Refused,
            )
            .with_detail(
                serde_json::json!({"reason": "corrupt", "actual_sha256": actual, "length": length, "trigger": trigger}),
            ),
        )
        .await;
        Err(OtaError::Tampered {
            sha256: sha.to_string(),
            reason,
        })
    }

    /// The file of a complete, verified image, if it is cached and unchanged
    /// since it was verified (same size and modification time).
    #[must_use]
    pub fn path_for(&self, sha256: &str) -> Option<PathBuf> {
        let sha = ImageDigest::parse(sha256).ok()?;
        let stamp = *self.verified().get(&sha)?;
        let path = self.image_path(&sha);
        let meta = std::fs::metadata(&path).ok()?;
        (meta.is_file() && stamp_of(&meta) == stamp).then_some(path)
    }

    /// Hashes a cached image again now. A corrupt image is deleted,
    /// audited and counted, and will be downloaded again by the next
    /// [`ImageCache::fetch`].
    ///
    /// # Errors
    /// [`OtaError::Tampered`] if it no longer matches, [`OtaError::Target`]
    /// if it is not cached.
    pub async fn verify(&self, sha256: &str) -> Result<CachedImage, OtaError> {
        self.verify_because(sha256, "verify requested").await
    }

    /// As [`ImageCache::verify`], saying why in the audit row of a corrupt
    /// image (for example: which device reported that the image it
    /// downloaded failed its check).
    ///
    /// # Errors
    /// As [`ImageCache::verify`].
    pub async fn verify_because(
        &self,
        sha256: &str,
        trigger: &str,
    ) -> Result<CachedImage, OtaError> {
        let sha = ImageDigest::parse(sha256)?;
        let lock = self.lock_for(&sha);
        let _guard = lock.lock().await;
        self.check(&sha, trigger).await
    }

    /// Makes sure the image of `target` is cached, downloading it (once) if
    /// it is not.
    ///
    /// # Errors
    /// As [`ImageCache::fetch_expected`].
    pub async fn fetch(&self, target: &TargetInfo) -> Result<(CachedImage, Fetch), OtaError> {
        self.fetch_expected(
            &target.name,
            &Expected {
                url: target.url.clone(),
                length: target.length,
                sha256: target.sha256.clone(),
            },
        )
        .await
    }

    /// Makes sure the image `expected` (named `name` in logs and audit rows)
    /// is cached, downloading or resuming it if it is not.
    ///
    /// # Errors
    /// [`OtaError::Interrupted`] (the partial file is kept; call again to
    /// resume), [`OtaError::ImageRefused`] (the server sent another image),
    /// [`OtaError::Storage`].
    pub async fn fetch_expected(
        &self,
        name: &str,
        expected: &Expected,
    ) -> Result<(CachedImage, Fetch), OtaError> {
        let sha = ImageDigest::parse(&expected.sha256)?;
        let lock = self.lock_for(&sha);
        let _guard = lock.lock().await;
        if let Some(path) = self.path_for(sha.as_str()) {
            let stamp = self.verified().get(&sha).copied();
            if stamp.is_some_and(|s| s.length == expected.length) {
                return Ok((
                    CachedImage {
                        sha256: sha,
                        length: expected.length,
                        path,
                    },
                    Fetch::Cached,
                ));
            }
        } else if self.verified().contains_key(&sha) {
            // Verified before, but the file's size or modification time
            // changed since (the image server has stopped serving it): hash
            // it again. Unchanged content is simply verified anew; anything
            // else is deleted, audited and counted, and downloaded again.
            match self
                .check(&sha, "the cached file changed since it was verified")
                .await
            {
                Ok(image) if image.length == expected.length => {
                    return Ok((image, Fetch::Cached));
                }
                Ok(_) | Err(OtaError::Tampered { .. } | OtaError::Target { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| OtaError::Join(e.to_string()))?;
        let expected = Expected {
            sha256: sha.to_string(),
            ..expected.clone()
        };
        let partial = self.partial_dir.join(sha.as_str());
        let result = download(
            &self.client,
            &expected,
            &partial,
            self.settings.download_timeout,
        )
        .await;
        match result {
            Ok(done) => {
                self.metrics.received_bytes.inc_by(done.received);
                let path = self.image_path(&sha);
                self.persist(&partial, &path).await?;
                let meta = tokio::fs::metadata(&path)
                    .await
                    .map_err(OtaError::storage("stat", &path))?;
                self.verified().insert(sha.clone(), stamp_of(&meta));
                self.metrics.downloads.inc("complete");
                self.update_gauge();
                tracing::info!(
                    target = name,
                    sha256 = %sha,
                    length = expected.length,
                    resumed_from = done.resumed_from,
                    "image downloaded and verified"
                );
                self.audit(
                    AuditEvent::new("gateway", "ota.image.download", name, Outcome::Allowed)
                        .with_detail(serde_json::json!({
                            "sha256": sha.as_str(),
                            "length": expected.length,
                            "resumed_from": done.resumed_from,
                            "received": done.received,
                        })),
                )
                .await;
                Ok((
                    CachedImage {
                        sha256: sha,
                        length: expected.length,
                        path,
                    },
                    Fetch::Downloaded(done),
                ))
            }
            Err(e @ OtaError::Interrupted { .. }) => {
                self.metrics.downloads.inc("interrupted");
                tracing::warn!(target = name, sha256 = %sha, "{e}");
                Err(e)
            }
            Err(e @ OtaError::ImageRefused { .. }) => {
                self.metrics.downloads.inc("refused");
                self.metrics.corrupt.inc();
                tracing::error!(target = name, sha256 = %sha, "{e}");
                self.audit(
                    AuditEvent::new("gateway", "ota.image.download", name, Outcome::Refused)
                        .with_detail(
                            serde_json::json!({"sha256": sha.as_str(), "reason": e.to_string()}),
                        ),
                )
                .await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn persist(&self, partial: &Path, path: &Path) -> Result<(), OtaError> {
        let (partial, path, dir) = (partial.to_owned(), path.to_owned(), self.dir.clone());
        OtaError::blocking(move || {
            std::fs::rename(&partial, &path)
                .map_err(OtaError::storage("move into place", &path))?;
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(OtaError::storage("sync", &dir))
        })
        .await
    }

    /// Every complete, verified image.
    #[must_use]
    pub fn images(&self) -> Vec<CachedImage> {
        let mut v: Vec<CachedImage> = self
            .verified()
            .iter()
            .map(|(sha, stamp)| CachedImage {
                sha256: sha.clone(),
                length: stamp.length,
                path: self.image_path(sha),
            })
            .collect();
        v.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        v
    }

    /// Deletes every cached and partial image not in `keep` (SHA-256 hex),
    /// except images being downloaded right now. Returns the digests
    /// removed.
    ///
    /// # Errors
    /// [`OtaError::Storage`] if a file cannot be deleted.
    pub async fn remove_unused(&self, keep: &[&str]) -> Result<Vec<String>, OtaError> {
        let keep: Vec<ImageDigest> = keep
            .iter()
            .filter_map(|k| ImageDigest::parse(k).ok())
            .collect();
        let mut candidates: Vec<(ImageDigest, PathBuf)> = Vec::new();
        for dir in [&self.dir, &self.partial_dir] {
            let mut entries = tokio::fs::read_dir(dir)
                .await
                .map_err(OtaError::storage("list", dir))?;
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(OtaError::storage("list", dir))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Ok(sha) = ImageDigest::parse(&name) {
                    if name == sha.as_str() && !keep.contains(&sha) && entry.path().is_file() {
                        candidates.push((sha, entry.path()));
                    }
                }
            }
        }
        let mut removed = Vec::new();
        for (sha, path) in candidates {
            let lock = self.lock_for(&sha);
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(OtaError::storage("remove", &path)(e)),
            }
            self.verified().remove(&sha);
            if !removed.contains(&sha.to_string()) {
                removed.push(sha.to_string());
            }
        }
        {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.retain(|sha, l| keep.contains(sha) || Arc::strong_count(l) > 1);
        }
        self.update_gauge();
        if !removed.is_empty() {
            tracing::info!(removed = removed.len(), "removed images no campaign needs");
            self.audit(
                AuditEvent::new("gateway", "ota.image.remove", "image-cache", Outcome::Info)
                    .with_detail(serde_json::json!({"removed": removed})),
            )
            .await;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    const GOOD_IMAGE: &[u8] = b"good image";

    /// A data folder with an empty `ota/images` folder, and the audit log
    /// and metrics a cache opened on it uses: the tests put image files
    /// there by hand before [`Fixture::open`] so that opening checks them.
    struct Fixture {
        dir: tempfile::TempDir,
        audit: AuditLog,
        metrics: OtaMetrics,
        images: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let audit = AuditLog::open(&dir.path().join("gw.db")).unwrap();
            let images = dir.path().join("ota/images");
            std::fs::create_dir_all(&images).unwrap();
            Self {
                dir,
                audit,
                metrics: OtaMetrics::default(),
                images,
            }
        }

        /// Writes `bytes` as the cached file named by the SHA-256 of
        /// `digest_of` (the same bytes for a good image, others for a
        /// corrupt one); returns that digest.
        fn put_image(&self, digest_of: &[u8], bytes: &[u8]) -> String {
            let sha = hex::encode(sha2::Sha256::digest(digest_of));
            std::fs::write(self.images.join(&sha), bytes).unwrap();
            sha
        }

        async fn open(&self) -> ImageCache {
            let settings = CacheSettings {
                download_timeout: Duration::from_secs(10),
                max_parallel_downloads: 1,
            };
            ImageCache::open(
                self.dir.path(),
                reqwest::Client::new(),
                settings,
                self.audit.clone(),
                self.metrics.clone(),
            )
            .await
            .unwrap()
        }
    }

    #[test]
    fn digests_are_checked_once() {
        let ok = "AB".repeat(32);
        assert_eq!(ImageDigest::parse(&ok).unwrap().as_str(), "ab".repeat(32));
        assert!(ImageDigest::parse("../etc/passwd").is_err());
        assert!(ImageDigest::parse(&"g".repeat(64)).is_err());
        assert!(ImageDigest::parse("abc").is_err());
    }

    #[tokio::test]
    async fn corrupt_images_are_removed_at_open_and_by_verify() {
        let f = Fixture::new();
        let good_sha = f.put_image(GOOD_IMAGE, GOOD_IMAGE);
        let bad_sha = f.put_image(b"other", b"not other");
        let cache = f.open().await;
        assert!(cache.path_for(&good_sha).is_some());
        assert!(cache.path_for(&bad_sha).is_none());
        assert!(!f.images.join(&bad_sha).exists());
        assert_eq!(f.metrics.corrupt.get(), 1);
        assert_eq!(
            f.audit
                .find(&bad_sha, Some("ota.image.verify"))
                .unwrap()
                .len(),
            1
        );

        // Tampered after verification: verify() catches it.
        std::fs::write(f.images.join(&good_sha), b"evil image").unwrap();
        assert!(matches!(
            cache.verify(&good_sha).await,
            Err(OtaError::Tampered { .. })
        ));
        assert!(cache.path_for(&good_sha).is_none());
        assert!(!f.images.join(&good_sha).exists());

        // Unused images and partial files go.
        std::fs::write(f.images.join(&good_sha), GOOD_IMAGE).unwrap();
        cache.verify(&good_sha).await.unwrap();
        std::fs::write(f.images.join(PARTIAL).join(&bad_sha), b"part").unwrap();
        let removed = cache.remove_unused(&[]).await.unwrap();
        assert_eq!(removed.len(), 2);
        assert!(cache.images().is_empty());
    }

    #[tokio::test]
    async fn a_changed_cached_file_is_hashed_again_before_it_is_used() {
        let f = Fixture::new();
        let sha = f.put_image(GOOD_IMAGE, GOOD_IMAGE);
        let cache = f.open().await;
        // Nothing listens there: a download would fail.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let expected = Expected {
            url: url::Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap(),
            length: GOOD_IMAGE.len() as u64,
            sha256: sha.clone(),
        };
        let file = f.images.join(&sha);
        let later = SystemTime::now() + Duration::from_secs(5);

        // Touched, same bytes: the image server stops serving it until it
        // is hashed again; the next fetch hashes it and keeps it.
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(cache.path_for(&sha).is_none());
        let (img, how) = cache.fetch_expected("acme/x.bin", &expected).await.unwrap();
        assert_eq!(how, Fetch::Cached);
        assert_eq!(img.path, file);
        assert!(cache.path_for(&sha).is_some());
        assert_eq!(f.metrics.corrupt.get(), 0);

        // Other bytes: deleted, audited with why it was checked, counted,
        // and downloaded again (which fails here).
        std::fs::write(&file, b"evil image").unwrap();
        assert!(cache.path_for(&sha).is_none());
        assert!(cache.fetch_expected("acme/x.bin", &expected).await.is_err());
        assert!(!file.exists());
        assert_eq!(f.metrics.corrupt.get(), 1);
        let rows = f.audit.find(&sha, Some("ota.image.verify")).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].outcome, "refused");
        assert_eq!(
            rows[0].detail_json()["trigger"],
            "the cached file changed since it was verified"
        );
    }
}
