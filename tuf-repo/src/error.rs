//! The crate's one error type.
//!
//! Every variant names what failed and with which input (role, path, version,
//! expiry time) and, where there is one, says what the operator should do next.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while authoring, publishing or verifying a
/// Wardgate TUF repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing ("reading", "writing", "creating directory", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A metadata or key file is not valid JSON of the expected shape
    /// (malformed, truncated, wrong type).
    #[error(
        "{path} is not valid {what}: {source}; restore it from the repository or re-create it"
    )]
    Json {
        /// Which document we expected ("root metadata", "key file", ...).
        what: String,
        /// The file (or upload name) that failed to parse.
        path: PathBuf,
        /// The parser's message.
        source: serde_json::Error,
    },

    /// Canonical JSON serialisation failed (never expected for our own types).
    #[error("cannot serialise {what}: {reason}")]
    Serialize {
        /// What was being serialised.
        what: String,
        /// The serialiser's message.
        reason: String,
    },

    /// A private key file is not usable.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The passphrase does not decrypt the key file.
    #[error("wrong passphrase for key file {path} (or the file was altered); try again or use the key's backup")]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },

    /// A passphrase is needed but none was given.
    #[error("key file {path} is encrypted; give its passphrase (--passphrase-env or WARDGATE_TUF_PASSPHRASE)")]
    PassphraseRequired {
        /// The key file.
        path: PathBuf,
    },

    /// A key was offered to sign a role that does not list it.
    #[error("key {key_id} is not trusted for role '{role}'; the role trusts {trusted:?}. Use one of those keys or rotate the role's keys first")]
    UntrustedKey {
        /// The role name (`root`, `targets`, `snapshot`, `timestamp` or a manufacturer).
        role: String,
        /// The offered key's TUF key id (hex).
        key_id: String,
        /// The key ids the role trusts.
        trusted: Vec<String>,
    },

    /// Fewer valid signatures than the role's threshold.
    #[error("role '{role}' needs {threshold} valid signature(s) but has {valid}; sign with more of its keys")]
    ThresholdNotMet {
        /// The role name.
        role: String,
        /// The role's threshold.
        threshold: u64,
        /// How many valid signatures from trusted keys were found.
        valid: u64,
    },

    /// A target name or manufacturer name is unsafe or malformed.
    #[error("invalid target name {name:?}: {reason}")]
    InvalidTargetName {
        /// The offending name, as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A manufacturer tried to publish a target outside its `<manufacturer>/*` scope.
    #[error("role '{role}' may only publish under '{pattern}', not '{target}'")]
    OutsideDelegation {
        /// The delegated role.
        role: String,
        /// The target name it tried to publish.
        target: String,
        /// The role's path pattern.
        pattern: String,
    },

    /// A role (or delegated role) is not in the repository.
    #[error("role '{role}' is not in the repository; {hint}")]
    UnknownRole {
        /// The missing role.
        role: String,
        /// What to do about it.
        hint: &'static str,
    },

    /// A firmware release is not newer than the published one.
    #[error("{target}: version {offered} is not newer than the published version {published}; release a higher version")]
    VersionNotNewer {
        /// The target (or hardware line) concerned.
        target: String,
        /// The version already published.
        published: String,
        /// The version offered.
        offered: String,
    },

    /// Metadata version does not increase.
    #[error(
        "role '{role}': metadata version {offered} must be greater than the published {published}"
    )]
    MetadataRollback {
        /// The role.
        role: String,
        /// The version already published.
        published: u64,
        /// The version offered.
        offered: u64,
    },

    /// Firmware custom metadata is missing or malformed.
    #[error("target {target}: invalid custom metadata: {reason}")]
    InvalidCustom {
        /// The target name.
        target: String,
        /// What is wrong.
        reason: String,
    },

    /// An image does not match its target entry.
    #[error("target {target}: image {what} mismatch (metadata says {expected}, file has {actual}); upload the image that was signed")]
    ImageMismatch {
        /// The target name.
        target: String,
        /// "length" or "sha256".
        what: &'static str,
        /// What the signed metadata says.
        expected: String,
        /// What the file has.
        actual: String,
    },

    /// Metadata has expired.
    #[error("role '{role}' expired at {expired_at}; re-sign it with a later expiry (`tuf-repo {resign}`)")]
    Expired {
        /// The role.
        role: String,
        /// When it expired (RFC 3339).
        expired_at: String,
        /// The subcommand that re-signs it.
        resign: &'static str,
    },

    /// A command-line or API argument is invalid.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// Why.
        reason: String,
    },

    /// The repository failed to load as a TUF client loads it.
    #[error("repository at {location} does not verify: {source}")]
    Verify {
        /// The directory or URL.
        location: String,
        /// tough's error (it names the role and the check).
        source: Box<tough::error::Error>,
    },

    /// A tough editor or schema operation failed.
    #[error("{context}: {source}")]
    Tough {
        /// What we were doing.
        context: String,
        /// tough's error.
        source: Box<tough::error::Error>,
    },

    /// tough's schema check refused metadata (signatures, threshold).
    #[error("{context}: {source}")]
    Schema {
        /// What was being checked.
        context: String,
        /// tough's schema error.
        source: Box<tough::schema::Error>,
    },

    /// Building the HTTPS transport failed (CA or client identity unusable).
    #[error("HTTPS transport: {reason}")]
    Transport {
        /// What failed.
        reason: String,
        /// The TLS material's problem, when that was the cause.
        #[source]
        source: Option<Box<wardgate_tls::TlsError>>,
    },

    /// The target does not exist in the repository.
    #[error("target {target} is not in the repository")]
    TargetNotFound {
        /// The target name.
        target: String,
    },
}

impl Error {
    /// Shorthand for an [`Error::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for an [`Error::Tough`].
    pub(crate) fn tough(context: impl Into<String>, source: tough::error::Error) -> Self {
        Self::Tough {
            context: context.into(),
            source: Box::new(source),
        }
    }
}
