//! `gateway access review|break-glass|token`: who can reach the admin API.
//!
//! `review` lists every token with role, creation and last use, and flags
//! those unused for `admin.stale_after_days` (default 90) or past expiry;
//! `break-glass --minutes N` issues a time-limited admin token, loudly.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::actor::cli_actor;
use super::config_arg::ConfigArg;
use super::token::{fmt_time, write_table, TokenArgs};
use crate::access::break_glass::issue_break_glass;
use crate::access::clock::{Clock, SystemClock};
use crate::access::review::{ReviewEntry, ReviewFlag};
use crate::access::token::store::TokenStore;
use crate::audit::AuditLog;
use crate::config::AdminConfig;

/// `gateway access --config <file> ...`
#[derive(Debug, Args)]
pub struct AccessCli {
    /// Configuration (database location, admin settings).
    #[command(flatten)]
    pub config: ConfigArg,
    /// The access subcommand.
    #[command(flatten)]
    pub args: AccessArgs,
}

/// `gateway access ...`
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AccessCommand,
}

/// Access subcommands.
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// List every token and flag stale, expired and break-glass ones.
    Review {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Fail (non-zero exit) when any usable token is flagged (for cron).
        #[arg(long)]
        fail_on_findings: bool,
    },
    /// Issue an emergency admin token that expires after `--minutes`.
    BreakGlass {
        /// Validity window in minutes (at most `admin.break_glass_max_minutes`).
        #[arg(long)]
        minutes: u32,
    },
    /// Create, revoke or list tokens.
    Token(TokenArgs),
}

/// What `review --fail-on-findings` found.
#[derive(Debug, thiserror::Error)]
#[error("access review found {0} token(s) needing attention; revoke them with `gateway access token revoke <id>`")]
pub struct Findings(pub usize);

/// Read the configuration (its `[storage]` and `[admin]` sections) and run
/// the access subcommand as the logged-in user.
///
/// # Errors
/// As [`run`], or the configuration cannot be read.
pub fn run_cli(cli: AccessCli, out: &mut dyn Write) -> anyhow::Result<()> {
    let (config, db) = cli.config.load_with_db()?;
    run(cli.args, &db, &config.admin, out)
}

/// Open the token store and audit log on `db_path` and run `args` with the
/// system clock.
///
/// # Errors
/// As [`run_with`], or if the database cannot be opened.
pub fn run(
    args: AccessArgs,
    db_path: &Path,
    admin: &AdminConfig,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = TokenStore::open(db_path, clock, admin.totp_skew_steps)?;
    let audit = AuditLog::open(db_path)?;
    run_with(args, &store, &audit, admin, &cli_actor(), out)
}

/// Run `args` against an open store (tests inject a manual clock here).
///
/// # Errors
/// Invalid input, a store or audit failure, or [`Findings`].
pub fn run_with(
    args: AccessArgs,
    store: &TokenStore,
    audit: &AuditLog,
    admin: &AdminConfig,
    actor: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match args.command {
        AccessCommand::Review {
            json,
            fail_on_findings,
        } => {
            let entries =
                store.review(chrono::Duration::days(i64::from(admin.stale_after_days)))?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&entries)?)?;
            } else {
                write_review(out, &entries, admin.stale_after_days)?;
            }
            let findings = entries.iter().filter(|e| needs_attention(e)).count();
            if fail_on_findings && findings > 0 {
                return Err(Findings(findings).into());
            }
        }
        AccessCommand::BreakGlass { minutes } => {
            let issued =
                issue_break_glass(store, audit, minutes, admin.break_glass_max_minutes, actor)?;
            writeln!(out, "!!! BREAK-GLASS admin token, valid {minutes} minutes; this issue and every use are audited !!!")?;
            writeln!(out, "token id:   {}", issued.record.id)?;
            writeln!(out, "expires:    {}", fmt_time(issued.record.expires_at))?;
            writeln!(out, "secret:     {}", issued.token.expose())?;
            writeln!(
                out,
                "\nRevoke it when done: gateway access token revoke {}",
                issued.record.id
            )?;
        }
        AccessCommand::Token(token) => super::token::run(token, store, audit, actor, out)?,
    }
    Ok(())
}

fn needs_attention(e: &ReviewEntry) -> bool {
    e.flags
        .iter()
        .any(|f| matches!(f, ReviewFlag::Stale | ReviewFlag::Expired))
}

fn flag_text(f: ReviewFlag, stale_days: u32) -> String {
    match f {
        ReviewFlag::Stale => format!("STALE(unused>={stale_days}d)"),
        ReviewFlag::Expired => "EXPIRED(not revoked)".to_owned(),
        ReviewFlag::Revoked => "revoked".to_owned(),
        ReviewFlag::BreakGlass => "BREAK-GLASS".to_owned(),
    }
}

/// The review as a table, then a summary line.
///
/// # Errors
/// Writing to `out` failed.
pub fn write_review(
    out: &mut dyn Write,
    entries: &[ReviewEntry],
    stale_days: u32,
) -> std::io::Result<()> {
    let records: Vec<_> = entries.iter().map(|e| e.record.clone()).collect();
    write_table(out, &records, |r| {
        entries
            .iter()
            .find(|e| e.record.id == r.id)
            .map(|e| {
                let mut flags: Vec<String> =
                    e.flags.iter().map(|f| flag_text(*f, stale_days)).collect();
                flags.insert(0, format!("idle {}d", e.idle_days));
                flags.join(" ")
            })
            .unwrap_or_default()
    })?;
    let findings = entries.iter().filter(|e| needs_attention(e)).count();
    writeln!(
        out,
        "\n{} token(s), {findings} needing attention (stale or expired); revoke with `gateway access token revoke <id>`",
        entries.len()
    )
}
