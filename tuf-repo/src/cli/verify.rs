//! `tuf-repo verify`: load the repository as a client would.

use std::path::PathBuf;

use url::Url;

use crate::error::{Error, Result};
use crate::transport::{HttpsTransport, HttpsTransportConfig};
use crate::verify::{trusted_root, verify, RepoLocation, VerifyReport};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A local repository directory.
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    pub repo: Option<PathBuf>,
    /// A repository base URL (serving `metadata/` and `targets/`).
    #[arg(long)]
    pub url: Option<Url>,
    /// Trusted root to start from (default for --repo: its `metadata/1.root.json`).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// CA certificate (PEM) to trust for --url.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for --url.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for --url.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Also download every target and check its length and hash.
    #[arg(long)]
    pub check_targets: bool,
}

fn read(p: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::io("reading", p, e))
}

/// Runs `verify`.
pub async fn run(a: Args) -> Result<()> {
    let location = match (&a.repo, &a.url) {
        (Some(d), _) => RepoLocation::Dir(d.clone()),
        (None, Some(u)) => RepoLocation::Url(u.clone()),
        (None, None) => {
            return Err(Error::InvalidArgument {
                what: "location",
                reason: "give --repo or --url".into(),
            })
        }
    };
    let root = trusted_root(&location, a.root.as_deref())?;
    let report = match &location {
        RepoLocation::Dir(_) => {
            verify(
                &location,
                &root,
                tough::FilesystemTransport,
                a.check_targets,
            )
            .await?
        }
        RepoLocation::Url(_) => {
            let ca = a.ca.as_ref().ok_or_else(|| Error::InvalidArgument {
                what: "--ca",
                reason: "verifying a URL needs --ca <ca.pem> (the OTA server's CA)".into(),
            })?;
            let identity = match (&a.client_cert, &a.client_key) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                _ => None,
            };
            let t = HttpsTransport::new(&HttpsTransportConfig {
                ca_pem: read(ca)?,
                client_identity: identity,
                timeout: None,
            })?;
            verify(&location, &root, t, a.check_targets).await?
        }
    };
    print_report(&report);
    Ok(())
}

fn print_report(r: &VerifyReport) {
    println!("verify     OK");
    for role in &r.roles {
        println!("  {role}");
    }
    println!(
        "  {} target(s){}",
        r.targets.len(),
        if r.targets_checked {
            ", every image downloaded and its hash checked"
        } else {
            ""
        }
    );
    for (name, len) in &r.targets {
        println!("    {name} ({len} bytes)");
    }
}
