//! Release policy at the upload boundary.
//!
//! The TUF rules (delegation keys and threshold, path scope, image length
//! and SHA-256, newer metadata and firmware versions, expiry) are
//! `tuf_repo::check_upload`'s, shared with the manufacturer's own
//! `tuf-repo release`. [`check`] adds what only the server knows (the
//! authenticated manufacturer and the target named by the upload route) and
//! turns every refusal into a [`ReleaseError`] whose [`ReleaseError::code`]
//! is stable for API clients and metrics.

use std::path::PathBuf;

use tuf_repo::{ManufacturerName, TargetPath};

/// An image streamed to disk and fsynced, not yet published. Its file name
/// is the target's file name (that is how `tuf-repo` matches images).
#[derive(Debug, Clone)]
pub struct StagedImage {
    /// Temporary file in the repository's `tmp/`.
    pub path: PathBuf,
    /// Bytes received.
    pub length: u64,
    /// Lower-case hex SHA-256 of the bytes received.
    pub sha256: String,
}

/// A release to check and publish.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The authenticated manufacturer.
    pub manufacturer: ManufacturerName,
    /// The target being released (from the upload route).
    pub target: TargetPath,
    /// The signed delegated-targets metadata, exactly as uploaded.
    pub role_bytes: Vec<u8>,
    /// The staged image.
    pub image: StagedImage,
}

/// A published release.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Published {
    /// Target name.
    #[schema(value_type = String)]
    pub target: TargetPath,
    /// Hex SHA-256.
    pub sha256: String,
    /// Length in bytes.
    pub length: u64,
    /// Version of the manufacturer's role metadata now published.
    pub role_version: u64,
    /// Version of the new snapshot.
    pub snapshot_version: u64,
}

/// Why a release was refused. Messages come from `tuf-repo` or from here
/// and say what to do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReleaseError {
    /// The metadata is not signed TUF targets metadata.
    #[error("release metadata is not valid: {0}; upload the <manufacturer>.json that `tuf-repo release` wrote")]
    Malformed(String),
    /// Target or metadata outside the manufacturer's scope.
    #[error("{0}")]
    Scope(String),
    /// No delegation for this manufacturer.
    #[error("{0}")]
    NotDelegated(String),
    /// Signature threshold not met or untrusted key.
    #[error("{0}")]
    BadSignature(String),
    /// Metadata already expired.
    #[error("{0}")]
    Expired(String),
    /// Metadata or firmware version not newer.
    #[error("{0}")]
    NotNewer(String),
    /// Invalid firmware facts in `custom`.
    #[error("{0}")]
    InvalidCustom(String),
    /// The route's target is not a new target of the metadata.
    #[error("target {0} is not a new target in the uploaded metadata; release it with `tuf-repo release` and upload that bundle")]
    NotListed(String),
    /// Length differs.
    #[error("{0}")]
    Length(String),
    /// SHA-256 differs.
    #[error("{0}")]
    Hash(String),
    /// Another new target is listed without its image.
    #[error("{0}")]
    MissingImage(String),
}

impl ReleaseError {
    /// Stable machine-readable code for API clients and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_metadata",
            Self::Scope(_) => "scope_violation",
            Self::NotDelegated(_) => "not_delegated",
            Self::BadSignature(_) => "bad_signature",
            Self::Expired(_) => "metadata_expired",
            Self::NotNewer(_) => "not_newer",
            Self::InvalidCustom(_) => "invalid_custom",
            Self::NotListed(_) => "target_not_in_metadata",
            Self::Length(_) => "length_mismatch",
            Self::Hash(_) => "hash_mismatch",
            Self::MissingImage(_) => "missing_image",
        }
    }
}

/// Maps a `tuf-repo` refusal to a [`ReleaseError`]; `None` for faults that
/// are not the uploader's (I/O and the like).
fn classify(e: &tuf_repo::Error) -> Option<ReleaseError> {
    use tuf_repo::Error as E;
    let m = e.to_string();
    Some(match e {
        E::Json { .. } => ReleaseError::Malformed(m),
        E::UntrustedKey { .. } | E::ThresholdNotMet { .. } | E::Schema { .. } => {
            ReleaseError::BadSignature(m)
        }
        E::InvalidTargetName { .. } | E::OutsideDelegation { .. } => ReleaseError::Scope(m),
        E::UnknownRole { .. } => ReleaseError::NotDelegated(m),
        E::VersionNotNewer { .. } | E::MetadataRollback { .. } => ReleaseError::NotNewer(m),
        E::InvalidCustom { .. } => ReleaseError::InvalidCustom(m),
        E::ImageMismatch { what, .. } if *what == "length" => ReleaseError::Length(m),
        E::ImageMismatch { .. } => ReleaseError::Hash(m),
        E::Expired { .. } => ReleaseError::Expired(m),
        E::InvalidArgument { .. } if m.contains("no image named") => ReleaseError::MissingImage(m),
        E::InvalidArgument { .. } => ReleaseError::Scope(m),
        _ => return None,
    })
}

/// Applies every release rule to `c` against the repository in `repo`.
///
/// # Errors
/// [`super::RepoError::Release`] for a refusal, another
/// [`super::RepoError`] for a server fault.
pub async fn check(
    repo: &tuf_repo::RepoDir,
    c: &Candidate,
) -> Result<tuf_repo::CheckedUpload, super::RepoError> {
    let role = c.manufacturer.as_str();
    if c.target.manufacturer() != &c.manufacturer {
        return Err(ReleaseError::Scope(format!(
            "target {} is outside manufacturer {role}'s path {role}/*; name it {role}/<file>",
            c.target
        ))
        .into());
    }
    let upload = tuf_repo::Upload {
        manufacturer: c.manufacturer.clone(),
        role_metadata: c.role_bytes.clone(),
        images: vec![c.image.path.clone()],
    };
    let checked = tuf_repo::check_upload(repo, &upload)
        .await
        .map_err(|e| match classify(&e) {
            Some(r) => super::RepoError::Release(r),
            None => super::RepoError::Metadata {
                file: "upload".into(),
                reason: e.to_string(),
            },
        })?;
    if !checked
        .new_targets
        .iter()
        .any(|t| t.name.to_string() == c.target.to_string())
    {
        return Err(ReleaseError::NotListed(c.target.to_string()).into());
    }
    Ok(checked)
}
