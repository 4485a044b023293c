//! The `tuf-repo` command line: one module per subcommand (`snapshot` and
//! `timestamp`, which differ only in the role, share [`online`]).
//!
//! Each module holds the subcommand's clap arguments and a `run` that calls
//! the library. `main.rs` only parses, sets up logging and maps errors to an
//! exit code. Passphrases for encrypted keys come from an environment
//! variable (`--passphrase-env`, default `WARDGATE_TUF_PASSPHRASE`), never
//! from the command line where `ps` would show them.

pub mod delegate;
pub mod enrol;
pub mod init;
pub mod keygen;
pub mod online;
pub mod publish;
pub mod release;
pub mod rotate;
pub mod verify;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use crate::keys::{self, Passphrase, SigningKey};
use crate::target_name::ManufacturerName;

/// `tuf-repo`: author and verify Wardgate's TUF repository.
#[derive(Debug, Parser)]
#[command(name = "tuf-repo", version, about)]
pub struct Cli {
    /// Environment variable holding the passphrase of encrypted key files.
    #[arg(long, global = true, default_value = "WARDGATE_TUF_PASSPHRASE")]
    pub passphrase_env: String,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 key pair.
    Keygen(keygen::Args),
    /// Create a new repository.
    Init(init::Args),
    /// Sign a manufacturer's empty first role version (manufacturer side).
    Enrol(enrol::Args),
    /// Delegate `<manufacturer>/*` to a manufacturer's keys.
    Delegate(delegate::Args),
    /// Sign a firmware image into a manufacturer's role (manufacturer side).
    Release(release::Args),
    /// Check an upload bundle and publish it as a new repository version (server side).
    Publish(publish::Args),
    /// Re-sign the snapshot with the online snapshot key.
    Snapshot(online::Args),
    /// Re-sign the timestamp with the online timestamp key.
    Timestamp(online::Args),
    /// Write a new root version with replaced keys for a role.
    Rotate(rotate::Args),
    /// Load the repository as a client would and print each role.
    Verify(verify::Args),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Context {
        passphrase_env: cli.passphrase_env,
    };
    match cli.command {
        Command::Keygen(a) => keygen::run(&ctx, a),
        Command::Init(a) => init::run(&ctx, a).await,
        Command::Enrol(a) => enrol::run(&ctx, a).await,
        Command::Delegate(a) => delegate::run(&ctx, a).await,
        Command::Release(a) => release::run(&ctx, a).await,
        Command::Publish(a) => publish::run(&ctx, a).await,
        Command::Snapshot(a) => online::run(&ctx, online::OnlineRole::Snapshot, a).await,
        Command::Timestamp(a) => online::run(&ctx, online::OnlineRole::Timestamp, a).await,
        Command::Rotate(a) => rotate::run(&ctx, a).await,
        Command::Verify(a) => verify::run(a).await,
    }
}

/// Settings shared by all subcommands.
#[derive(Debug, Clone)]
pub struct Context {
    /// Name of the passphrase environment variable.
    pub passphrase_env: String,
}

impl Context {
    /// The passphrase from the environment, if set.
    pub fn passphrase(&self) -> Result<Option<Passphrase>> {
        match std::env::var(&self.passphrase_env) {
            Ok(p) if !p.is_empty() => Passphrase::new(p).map(Some),
            _ => Ok(None),
        }
    }

    /// Loads private key files.
    pub fn load_keys(&self, paths: &[PathBuf]) -> Result<Vec<SigningKey>> {
        let pass = self.passphrase()?;
        paths
            .iter()
            .map(|p| SigningKey::load(p, pass.as_ref()))
            .collect()
    }
}

/// `--repo` and `--manufacturer`: the repository and the manufacturer's
/// role that `delegate`, `release` and `publish` work on.
#[derive(Debug, clap::Args)]
pub struct ManufacturerRepo {
    /// Repository directory (`release` only reads its metadata, so a copy
    /// will do).
    #[arg(long)]
    pub repo: PathBuf,
    /// Manufacturer (role name and path prefix), e.g. `acme-medical`.
    #[arg(long)]
    pub manufacturer: ManufacturerName,
}

/// `--key` and `--expires`: the manufacturer's private keys and the expiry
/// of the role version they sign, for the manufacturer-side commands
/// `enrol` and `release`.
#[derive(Debug, clap::Args)]
pub struct ManufacturerSigning {
    /// The manufacturer's private key files (repeat up to its threshold).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Expiry of the signed role metadata.
    #[arg(long, default_value = "182d", value_parser = duration_arg)]
    pub expires: std::time::Duration,
}

impl ManufacturerSigning {
    /// Loads the manufacturer's keys (decrypted with the context's
    /// passphrase when they are encrypted).
    pub fn load_keys(&self, ctx: &Context) -> Result<Vec<SigningKey>> {
        ctx.load_keys(&self.keys)
    }
}

/// Loads public key files (TUF JSON, as `keygen` writes them); a private
/// key file is accepted too and its public half used.
pub fn load_public_keys(ctx: &Context, paths: &[PathBuf]) -> Result<Vec<tough::schema::key::Key>> {
    paths
        .iter()
        .map(|p| match keys::load_public_key(p) {
            Ok(k) => Ok(k),
            Err(Error::Json { .. }) => {
                SigningKey::load(p, ctx.passphrase()?.as_ref()).map(|k| k.public_key())
            }
            Err(e) => Err(e),
        })
        .collect()
}

/// Parses a `7d`-style duration for clap.
pub fn duration_arg(s: &str) -> std::result::Result<std::time::Duration, String> {
    crate::repo::parse_duration(s).map_err(|e| e.to_string())
}

/// Prints one line of progress for a step.
pub(crate) fn say(step: &str, detail: impl std::fmt::Display) {
    println!("{step:<10} {detail}");
}

/// Repository directory argument check.
pub(crate) fn repo_dir(p: &Path) -> crate::repo::RepoDir {
    crate::repo::RepoDir::new(p)
}
