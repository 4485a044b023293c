//! `gateway ota ...`: the OTA agent on the command line.
//!
//! `gateway ota tuf-client` is a TUF client following the command-line
//! protocol of the TUF conformance suite (theupdateframework/tuf-conformance,
//! `CLIENT-CLI.md`), built on the agent's own TUF code
//! ([`crate::ota::load`], [`crate::ota::metadata_dir`],
//! [`crate::ota::download`]):
//!
//! ```text
//! gateway ota tuf-client --metadata-dir D init ROOT
//! gateway ota tuf-client --metadata-dir D --metadata-url U refresh
//! gateway ota tuf-client --metadata-dir D --metadata-url U --target-name P \
//!     --target-base-url T --target-dir O download
//! ```
//!
//! `gateway ota status --config <file>` prints the rollout's progress from
//! the gateway database: each campaign (target, version, wave, whether the
//! OTA server still hands it out) and each device's update state
//! ([`crate::ota::api::status`]; `--json` for the admin API's form).
//!
//! Exit code 0 on success, 1 on any failure (the reason goes to stderr).
//! Metadata is kept in `D` under unversioned names (`root.json`,
//! `timestamp.json`, ...). `download` refreshes first, then fetches the
//! target into `O` under its percent-encoded path and skips the download if
//! a file with the signed hash is already there. `https://` repositories
//! need `--ca-cert` (and `--client-cert`/`--client-key` for mutual TLS);
//! `http://` is accepted for local test repositories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use url::Url;

use crate::ota::download::{download, hash_file, local_file_name, Expected};
use crate::ota::load::{load_remote, RepoUrls};
use crate::ota::metadata_dir::MetadataDir;
use crate::ota::transport::plain_http_transport;
use crate::ota::OtaError;

/// `gateway ota ...`
#[derive(Debug, Args)]
pub struct OtaArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: OtaCommand,
}

/// OTA subcommands.
#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum OtaCommand {
    /// A TUF client following the TUF conformance suite's client protocol.
    TufClient(TufClientArgs),
    /// Rollout progress: campaigns, waves and each device's update state.
    Status(StatusArgs),
}

/// `gateway ota status --config <file> [--json]`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Configuration (database location).
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Print JSON (as `GET /api/v1/ota/status`) instead of text.
    #[arg(long)]
    pub json: bool,
}

fn status(a: &StatusArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (_, db) = a.config.load_with_db()?;
    let states = crate::ota::DeviceStates::open(&db)?;
    let s = crate::ota::api::status(&states)?;
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
    } else {
        write!(out, "{}", crate::ota::api::render_text(&s))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `gateway ota tuf-client [options] <init ROOT | refresh | download>`
#[derive(Debug, Args)]
pub struct TufClientArgs {
    /// Directory of the client's trusted metadata (required).
    #[arg(long, global = true)]
    pub metadata_dir: Option<PathBuf>,
    /// Base URL of the repository's metadata.
    #[arg(long, global = true)]
    pub metadata_url: Option<Url>,
    /// TUF target path to download.
    #[arg(long, global = true)]
    pub target_name: Option<String>,
    /// Base URL of the repository's targets.
    #[arg(long, global = true)]
    pub target_base_url: Option<Url>,
    /// Directory to store downloaded targets in.
    #[arg(long, global = true)]
    pub target_dir: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for `https://` repositories.
    #[arg(long, global = true)]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate for mutual TLS.
    #[arg(long, global = true, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `--client-cert`.
    #[arg(long, global = true, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Time allowed for each request.
    #[arg(long, global = true, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The step to run.
    #[command(subcommand)]
    pub step: TufStep,
}

/// Steps of the conformance protocol.
#[derive(Debug, Subcommand)]
pub enum TufStep {
    /// Trust `TRUSTED_ROOT` as the initial root (no network access).
    Init {
        /// The initial root.json.
        trusted_root: PathBuf,
    },
    /// Update the trusted metadata from `--metadata-url`.
    Refresh,
    /// Refresh, then download `--target-name` into `--target-dir`.
    Download,
}

/// Run an OTA subcommand; failures print their reason and exit with 1.
///
/// # Errors
/// Only when writing to `out` fails.
pub fn run(args: &OtaArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match &args.command {
        OtaCommand::Status(a) => status(a, out),
        OtaCommand::TufClient(a) => {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(tuf_client(a)));
            match result {
                Ok(message) => {
                    writeln!(out, "{message}")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("gateway ota tuf-client: {e:#}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn transport(a: &TufClientArgs, urls: &[&Url]) -> anyhow::Result<tuf_repo::HttpsTransport> {
    let https = urls.iter().any(|u| u.scheme() == "https");
    if !https {
        return Ok(plain_http_transport(a.timeout)?);
    }
    let ca = a.ca_cert.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "an https:// repository needs --ca-cert (the CA that signed its certificate)"
        )
    })?;
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
    };
    let identity = match (&a.client_cert, &a.client_key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    Ok(tuf_repo::HttpsTransport::new(
        &tuf_repo::HttpsTransportConfig {
            ca_pem: read(ca)?,
            client_identity: identity,
            timeout: Some(a.timeout),
        },
    )?)
}

fn required<'a, T>(value: Option<&'a T>, flag: &str, step: &str) -> anyhow::Result<&'a T> {
    value.ok_or_else(|| anyhow::anyhow!("`{step}` needs {flag}"))
}

async fn tuf_client(a: &TufClientArgs) -> anyhow::Result<String> {
    let metadata_dir = a
        .metadata_dir
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--metadata-dir is required"))?;
    let dir = MetadataDir::new(metadata_dir);
    match &a.step {
        TufStep::Init { trusted_root } => {
            let root = std::fs::read(trusted_root)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", trusted_root.display()))?;
            dir.init(&root)?;
            Ok(format!(
                "initialised {} with {}",
                metadata_dir.display(),
                trusted_root.display()
            ))
        }
        TufStep::Refresh => {
            let metadata = required(a.metadata_url.as_ref(), "--metadata-url", "refresh")?;
            let targets = a.target_base_url.as_ref().unwrap_or(metadata);
            let trusted = refresh(&dir, a, metadata, targets).await?;
            Ok(format!(
                "refreshed {}: snapshot version {}, valid until {}",
                metadata_dir.display(),
                trusted.snapshot_version(),
                trusted.expires()
            ))
        }
        TufStep::Download => {
            let metadata = required(a.metadata_url.as_ref(), "--metadata-url", "download")?;
            let name = required(a.target_name.as_ref(), "--target-name", "download")?;
            let targets = required(a.target_base_url.as_ref(), "--target-base-url", "download")?;
            let out_dir = required(a.target_dir.as_ref(), "--target-dir", "download")?;
            let trusted = refresh(&dir, a, metadata, targets).await?;
            let entry = trusted.entry(name)?;
            let file = out_dir.join(local_file_name(name));
            if file.is_file() {
                let (sha, len) = hash_file(&file).await?;
                if sha == entry.sha256 && len == entry.length {
                    return Ok(format!(
                        "{name} is already in {} (hash matches)",
                        file.display()
                    ));
                }
            }
            std::fs::create_dir_all(out_dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out_dir.display()))?;
            let partial = out_dir.join(format!("{}.part", local_file_name(name)));
            let client = transport(a, &[metadata, targets])?;
            let expected = Expected {
                url: entry.url.clone(),
                length: entry.length,
                sha256: entry.sha256.clone(),
            };
            let done = download(client.client(), &expected, &partial, a.timeout).await?;
            std::fs::rename(&partial, &file)
                .map_err(|e| OtaError::storage("move into place", &file)(e))?;
            Ok(format!(
                "downloaded {name} ({} bytes, SHA-256 {}, resumed from {}) to {}",
                entry.length,
                entry.sha256,
                done.resumed_from,
                file.display()
            ))
        }
    }
}

async fn refresh(
    dir: &MetadataDir,
    a: &TufClientArgs,
    metadata: &Url,
    targets: &Url,
) -> anyhow::Result<crate::ota::TrustedMetadata> {
    if !dir.is_initialised() {
        anyhow::bail!(
            "{} holds no root.json; run `gateway ota tuf-client --metadata-dir {} init <root.json>` first",
            dir.path().display(),
            dir.path().display()
        );
    }
    let t = transport(a, &[metadata, targets])?;
    Ok(load_remote(dir, t, &RepoUrls::new(metadata, targets)).await?)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{OtaCommand, TufStep};
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> super::TufClientArgs {
        let cli = Cli::try_parse_from(["gateway", "ota", "tuf-client"].iter().chain(args))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Ota(super::OtaArgs {
                command: OtaCommand::TufClient(a),
            }) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_conformance_suites_argument_orders() {
        let a = parse(&["--metadata-dir", "/d", "init", "/root.json"]);
        assert!(
            matches!(a.step, TufStep::Init { ref trusted_root } if trusted_root.ends_with("root.json"))
        );
        let a = parse(&[
            "--metadata-url",
            "http://h/metadata",
            "--metadata-dir",
            "/d",
            "refresh",
        ]);
        assert!(matches!(a.step, TufStep::Refresh));
        assert_eq!(a.metadata_url.unwrap().as_str(), "http://h/metadata");
        let a = parse(&[
            "--metadata-url",
            "http://h/metadata",
            "--metadata-dir",
            "/d",
            "--target-name",
            "path/to/a.txt",
            "--target-dir",
            "/t",
            "--target-base-url",
            "http://h/targets",
            "download",
        ]);
        assert!(matches!(a.step, TufStep::Download));
        assert_eq!(a.target_name.as_deref(), Some("path/to/a.txt"));
        // TLS options may also follow the step.
        let a = parse(&["--metadata-dir", "/d", "refresh", "--ca-cert", "/ca.pem"]);
        assert!(a.ca_cert.is_some());
        assert!(parse(&["refresh"]).metadata_dir.is_none());
    }
}
