//! `gateway pki init|server|device`: the ward PKI on the command line.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use wardgate_protocol::DeviceId;

use crate::pki::Ca;

/// `gateway pki ...`
#[derive(Debug, Args)]
pub struct PkiArgs {
    /// Directory holding `ca.pem` and `ca.key` (created by `init`).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// What to create.
    #[command(subcommand)]
    pub command: PkiCommand,
}

/// PKI subcommands.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the ward device CA (`ca.pem`, `ca.key` mode 0600).
    Init {
        /// CA common name.
        #[arg(long, default_value = "Wardgate ward device CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// Issue the gateway's TLS server certificate (`server.pem`, `server.key`).
    Server {
        /// DNS names / IP addresses devices use to reach the gateway.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
    /// Issue a device client certificate (`<id>.pem`, `<id>.key`).
    Device {
        /// Device id (goes into SAN URI urn:wardgate:device:<id> and CN).
        #[arg(long)]
        id: String,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: i64,
    },
}

/// Run a PKI subcommand, printing the files written and fingerprints.
///
/// # Errors
/// An existing file, an invalid id, or an I/O / certificate error.
pub fn run(args: &PkiArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let load = || {
        Ca::load(&args.dir.join("ca.pem"), &args.dir.join("ca.key"))
            .context("loading the CA; create it first with `gateway pki init`")
    };
    match &args.command {
        PkiCommand::Init { name, days } => {
            let ca = Ca::generate(name, *days)?;
            let (c, k) = ca.write(&args.dir)?;
            writeln!(out, "wrote {} and {} (0600)", c.display(), k.display())?;
        }
        PkiCommand::Server { names, days } => {
            let issued = load()?.issue_server(names, *days)?;
            let (c, k) = (args.dir.join("server.pem"), args.dir.join("server.key"));
            issued.write(&c, &k)?;
            writeln!(out, "wrote {} and {} (0600)", c.display(), k.display())?;
        }
        PkiCommand::Device { id, days } => {
            let id = DeviceId::parse(id)?;
            let issued = load()?.issue_device(&id, *days)?;
            let (c, k) = (
                args.dir.join(format!("{id}.pem")),
                args.dir.join(format!("{id}.key")),
            );
            issued.write(&c, &k)?;
            writeln!(out, "wrote {} and {} (0600)", c.display(), k.display())?;
            writeln!(out, "fingerprint {}", issued.fingerprint())?;
        }
    }
    Ok(())
}
