//! `gateway audit verify|export|anchor`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};

use super::config_arg::ConfigArg;
use crate::audit::anchor::{self, AnchorKey};
use crate::audit::{AuditLog, ExportFormat};

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
    /// row was edited, deleted or moved. With `--anchor`, also check the
    /// log against signed anchors kept elsewhere, which reveals rows cut
    /// off its end.
    Verify {
        /// A file of anchors: the gateway's `audit.anchor_file` as shipped
        /// to the SIEM, or a capture of `<prefix>/audit/anchor` from the
        /// hospital broker (`mosquitto_sub -v` lines).
        #[arg(long)]
        anchor: Option<PathBuf>,
        /// The anchor public key to trust (64 hex digits, as `gateway
        /// audit anchor` and the gateway's start-up log print it); default
        /// the key beside the database.
        #[arg(long, requires = "anchor")]
        anchor_key: Option<String>,
    },
    /// Write every row, one per line (to stdout or `--out`).
    Export {
        /// Output file (created, must not exist).
        #[arg(long)]
        out: Option<PathBuf>,
        /// JSON lines, or RFC 5424 syslog messages.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// The syslog HOSTNAME field (default: this machine's host name).
        #[arg(long)]
        hostname: Option<String>,
    },
    /// Sign the chain head now and append the anchor to `--out` (default
    /// the configured `audit.anchor_file`); prints it and the public key.
    Anchor {
        /// Anchor file to append to.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `gateway audit export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per row.
    Json,
    /// One RFC 5424 message per row.
    Syslog,
}

/// Run an audit subcommand.
///
/// # Errors
/// The database cannot be read or the export written.
pub fn run(args: &AuditArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (config, db) = args.config.load_with_db()?;
    let log = AuditLog::open(&db)?;
    match &args.command {
        AuditCommand::Verify { anchor, anchor_key } => {
            let mut intact = print_chain(&log, out)?;
            if let Some(path) = anchor {
                let key = match anchor_key {
                    Some(hex) => anchor::parse_public_key(hex)?,
                    None => AnchorKey::load(&config.storage.data_dir.join(anchor::KEY_FILE))?
                        .verifying_key(),
                };
                let text =
                    std::fs::read_to_string(path).map_err(|source| anchor::AnchorError::Read {
                        path: path.clone(),
                        source,
                    })?;
                intact &= print_anchors(&anchor::check(&text, &log.all()?, &key), out)?;
            }
            if !intact {
                writeln!(
                    out,
                    "keep this database as evidence and compare with your last export"
                )?;
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export {
            out: path,
            format,
            hostname,
        } => {
            let format = match format {
                Format::Json => ExportFormat::JsonLines,
                Format::Syslog => ExportFormat::Syslog {
                    hostname: hostname.clone().unwrap_or_else(host_name),
                },
            };
            let n = match path {
                Some(p) => {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(p)?;
                    log.export_as(&mut f, format)?
                }
                None => log.export_as(out, format)?,
            };
            eprintln!("exported {n} audit rows");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Anchor { out: path } => {
            let key = AnchorKey::load_or_create(&config.storage.data_dir)?;
            let Some(head) = log.head()? else {
                writeln!(out, "the audit log is empty: nothing to anchor")?;
                return Ok(ExitCode::SUCCESS);
            };
            let anchor = key.sign(&config.uplink.client_id, &head, Utc::now());
            let line = serde_json::to_string(&anchor)?;
            let file = path
                .clone()
                .unwrap_or_else(|| config.audit.anchor_path(&config.storage));
            anchor::append_line(&file, &line)?;
            writeln!(out, "{line}")?;
            writeln!(
                out,
                "anchored row {} ({} rows) in {}; anchor key {}",
                head.row_id,
                head.rows,
                file.display(),
                key.public_hex()
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Print the chain walk; true if intact.
fn print_chain(log: &AuditLog, out: &mut dyn Write) -> anyhow::Result<bool> {
    let report = log.verify()?;
    if report.is_intact() {
        writeln!(out, "audit log intact: {} rows verified", report.rows)?;
        return Ok(true);
    }
    writeln!(
        out,
        "audit log TAMPERED: {} problem(s) in {} rows",
        report.problems.len(),
        report.rows
    )?;
    for p in &report.problems {
        writeln!(out, "row {}: {}", p.row_id, p.problem)?;
    }
    Ok(false)
}

/// Print what the anchors showed; true if every anchor verified and holds.
fn print_anchors(report: &anchor::AnchorReport, out: &mut dyn Write) -> anyhow::Result<bool> {
    for r in &report.refused {
        writeln!(out, "anchor REFUSED: {r}")?;
    }
    for p in &report.problems {
        writeln!(out, "audit log TRUNCATED or rewritten: {p}")?;
    }
    match (report.checked, report.covered_to) {
        (0, _) => writeln!(
            out,
            "no anchor in the file verified: nothing vouches for the log's end"
        )?,
        (n, Some(row)) if report.is_intact() => writeln!(
            out,
            "anchors intact: {n} anchor(s) verified, the log holds every row up to row {row}"
        )?,
        _ => {}
    }
    Ok(report.is_intact() && report.checked > 0)
}

/// This machine's host name, for syslog; `-` (nil) when unknown.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}
