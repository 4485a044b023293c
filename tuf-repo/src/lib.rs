//! Authoring and verifying Wardgate's TUF repository.
//!
//! Keys (Ed25519), root with per-role thresholds, the operator's targets role
//! that only delegates, one delegated targets role per manufacturer scoped to
//! `<manufacturer>/*`, releases signed by the manufacturer alone, snapshot and
//! timestamp re-signing, root rotation, and verification through `tough` as a
//! real client would. Used by the OTA server and by manufacturers.
//!
//! # Components
//!
//! - [`keys`]: Ed25519 [`keys::SigningKey`] (implements tough's `Sign` and
//!   `KeySource`), key files (0600, optional Argon2id + ChaCha20-Poly1305
//!   passphrase encryption), TUF key ids and public keys.
//! - [`target_name`]: [`target_name::ManufacturerName`] and
//!   [`target_name::TargetPath`], the checked names (no `..`, no absolute
//!   paths, no backslashes) that agree with tough's `TargetName`.
//! - [`firmware`]: the `custom` metadata of a firmware target
//!   (`hardware_ids`, semver `version`, `min_version`, `release_notes`).
//! - [`policy`]: the release rules (scope, monotonic versions), used by both
//!   the manufacturer's `release` and the server's upload check.
//! - [`repo`]: authoring operations on a repository directory: [`repo::init`],
//!   [`repo::delegate`], [`repo::release`], [`repo::publish`],
//!   [`repo::online`] (snapshot, timestamp), [`repo::rotate`].
//! - [`verify`]: load a repository through tough from a directory or URL.
//! - [`transport`]: a tough `Transport` over reqwest with a private CA and an
//!   optional client certificate.
//! - [`hashing`]: streaming SHA-256 with a terminal progress bar.
//! - [`cli`]: the `tuf-repo` subcommands, one module each (`snapshot` and
//!   `timestamp` share one).
//! - [`error`]: the crate's one [`Error`] enum.
//!
//! # Library API for the OTA server
//!
//! - Keys: [`SigningKey::load`]`(path, passphrase)` (online keys are usually
//!   stored without a passphrase), [`SigningKey::key_id`],
//!   [`SigningKey::public_key`], [`SigningKey::key_source`] for `tough::editor`.
//! - Upload handling: build an [`Upload`] (`manufacturer`, the uploaded
//!   `<manufacturer>.json` bytes, the image paths), then
//!   [`check_upload`]`(&RepoDir::new(current), &upload)` runs every check
//!   (delegation keys and threshold, path scope, length and SHA-256, newer
//!   version, expiry) and [`publish`]`(repo, &checked, &OnlineKeys, snapshot_expiry,
//!   timestamp_expiry, out_dir)` writes the next repository version into
//!   `out_dir` for an atomic swap; [`accept_upload`] does both.
//!   [`repo::publish::read_bundle`] reads a bundle directory made by
//!   `tuf-repo release`.
//! - Freshness: [`refresh_timestamp`]`(repo, &[timestamp_key], expiry)` re-signs
//!   only `timestamp.json` (cheap; run it every few minutes);
//!   [`repo::online::snapshot`] re-signs the snapshot.
//! - Client side: [`verify::load_repository`] (with a persistent datastore
//!   for long-running clients), [`verify::verify`], [`verify::fetch_target`], with
//!   [`HttpsTransport`] (private CA + client certificate) or
//!   `tough::FilesystemTransport`.
//! - Errors: every function returns [`Error`]; variants carry role names,
//!   paths, versions and expiry times, and their messages say what to do next.
//!
//! # Where the controls of `docs/architecture.md` live
//!
//! - "targets only delegates; one role per manufacturer, `<manufacturer>/*`":
//!   [`repo::delegate`], [`policy::check_scope`].
//! - "the OTA server never holds a manufacturer key": [`repo::publish`] only
//!   verifies manufacturer signatures; it signs with snapshot/timestamp keys.
//! - "root rotation with old and new keys": [`repo::rotate`].
//! - "unsafe target names refused": [`target_name::TargetPath`].
//! - "private CA, client certificate": [`transport::HttpsTransport`].
//!
//! # Two tough 0.24 behaviours this crate works around
//!
//! - tough stops walking the delegation list at the first delegated role
//!   missing from the snapshot, hiding every later manufacturer. Hence
//!   enrolment: a manufacturer signs an empty role ([`repo::delegate::enrol`])
//!   that [`repo::delegate::delegate`] publishes as its version 1.
//! - tough checks signatures over its own re-serialisation, so a field it
//!   ignores (an altered `_type`) passes its check while python-tuf refuses
//!   the bytes. Uploads must round-trip exactly ([`check_upload`]).
//!
//! # Repository layout
//!
//! See [`repo::layout`]. Consistent snapshots are on. Images are stored
//! under both the spec's name (`<m>/<sha256>.<file>`, used by python-tuf) and
//! tough 0.24's (`<sha256>.<m>/<file>`), as a hard link.

#![deny(missing_docs)]

pub mod cli;
pub mod error;
pub mod firmware;
pub mod hashing;
pub mod keys;
pub mod policy;
pub mod repo;
pub mod target_name;
pub mod transport;
pub mod verify;

pub use error::{Error, Result};
pub use keys::{KdfParams, Passphrase, SigningKey};
pub use repo::online::refresh_timestamp;
pub use repo::publish::{
    accept_upload, check_upload, publish, CheckedUpload, OnlineKeys, PublishedVersion, Upload,
};
pub use repo::{Expiries, RepoDir, RepoState};
pub use target_name::{ManufacturerName, TargetPath};
pub use transport::{HttpsTransport, HttpsTransportConfig};
pub use verify::{RepoLocation, RoleStatus, VerifyReport};
