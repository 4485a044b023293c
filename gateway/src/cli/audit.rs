//! `gateway audit verify|export`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::config_arg::ConfigArg;
use crate::audit::AuditLog;

/// `gateway audit ...`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Configuration (for the database location).
    #[command(flatten)]
    pub config: ConfigArg,
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; exit status 1 and a list of broken rows if any
    /// row was edited, deleted or moved.
    Verify,
    /// Write every row as JSON lines (to stdout or `--out`).
    Export {
        /// Output file (created, must not exist).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Run an audit subcommand.
///
/// # Errors
/// The database cannot be read or the export written.
pub fn run(args: &AuditArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (_config, db) = args.config.load_with_db()?;
    let log = AuditLog::open(&db)?;
    match &args.command {
        AuditCommand::Verify => {
            let report = log.verify()?;
            if report.is_intact() {
                writeln!(out, "audit log intact: {} rows verified", report.rows)?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(
                    out,
                    "audit log TAMPERED: {} problem(s) in {} rows",
                    report.problems.len(),
                    report.rows
                )?;
                for p in &report.problems {
                    writeln!(out, "row {}: {}", p.row_id, p.problem)?;
                }
                writeln!(
                    out,
                    "keep this database as evidence and compare with your last export"
                )?;
                Ok(ExitCode::from(1))
            }
        }
        AuditCommand::Export { out: path } => {
            let n = match path {
                Some(p) => {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(p)?;
                    log.export(&mut f)?
                }
                None => log.export(out)?,
            };
            eprintln!("exported {n} audit rows");
            Ok(ExitCode::SUCCESS)
        }
    }
}
