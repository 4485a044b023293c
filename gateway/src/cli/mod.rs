//! The `gateway` command line: one module per subcommand.
//!
//! `main.rs` parses [`Cli`], calls [`Cli::prepare`] (which reads and
//! validates the configuration of `gateway run` once, so logging can start
//! with its `[log]` settings), initialises logging from
//! [`Invocation::log`], and runs the [`Invocation`]. Everything a test would
//! want to reach lives here and in the library.
//!
//! | part | module |
//! | --- | --- |
//! | `gateway run` | [`run`] |
//! | `gateway pki ...` | [`pki`] |
//! | `gateway device ...` | [`device`] |
//! | `gateway audit ...` | [`audit`] |
//! | `gateway access ...` (review, break-glass, token) | [`access`], [`token`] |
//! | `gateway ota ...` (status, tuf-client) | [`ota`] |
//! | `gateway backup`, `gateway restore` | [`backup`] |
//! | `--config` of the offline subcommands | [`config_arg`] |
//! | the audit actor of CLI actions | [`actor`] |
//! | one-line error report | [`report`] |

pub mod access;
pub mod actor;
pub mod audit;
pub mod backup;
pub mod config_arg;
pub mod device;
pub mod ota;
pub mod pki;
pub mod report;
pub mod run;
pub mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use config_arg::ConfigArg;
pub use report::describe;

use crate::config::{LogFormat, ValidConfig};

/// Wardgate ward edge gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    /// Log format (overrides `log.format` of the config).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run(run::RunArgs),
    /// Create the ward device CA, the server certificate and device certificates.
    Pki(pki::PkiArgs),
    /// Enrol, list, revoke, quarantine or re-activate devices.
    Device(device::DeviceArgs),
    /// Verify or export the hash-chained audit log.
    Audit(audit::AuditArgs),
    /// Admin API access: tokens, break-glass, access review.
    Access(access::AccessCli),
    /// OTA agent tools (a TUF client following the conformance protocol).
    Ota(ota::OtaArgs),
    /// Write a consistent, checked copy of the database.
    Backup(backup::BackupArgs),
    /// Restore a copy written by `gateway backup` (refused if its audit chain does not verify).
    Restore(backup::RestoreArgs),
}

/// How the process logs: the output format and the `tracing` filter used
/// when `WARDGATE_LOG` is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// Default filter directive (`log.level` for `gateway run`, else `info`).
    pub default_filter: String,
}

/// A parsed command line with what it needs read: `gateway run`'s
/// configuration, validated once.
#[derive(Debug)]
pub struct Invocation {
    /// How to log while it runs.
    pub log: LogSettings,
    task: Task,
}

/// What runs: `gateway run` with its configuration already read and
/// validated, or any other subcommand as parsed (they read their own files
/// when they run).
#[derive(Debug)]
enum Task {
    Run(Box<ValidConfig>),
    Other(Box<Command>),
}

impl Cli {
    /// The log format requested on the command line, if any.
    #[must_use]
    pub fn log_format(&self) -> Option<LogFormat> {
        match self.log_format.as_deref() {
            Some("json") => Some(LogFormat::Json),
            Some(_) => Some(LogFormat::Text),
            None => None,
        }
    }

    /// Read what the command needs before it runs: for `gateway run`, the
    /// configuration file with its `WARDGATE_*` overrides, validated (the
    /// only time the gateway reads it). `--log-format` wins over
    /// `log.format`.
    ///
    /// # Errors
    /// The configuration of `gateway run` cannot be read or is refused.
    pub fn prepare(self) -> anyhow::Result<Invocation> {
        let flag = self.log_format();
        let mut log = LogSettings {
            format: flag.unwrap_or_default(),
            default_filter: "info".to_owned(),
        };
        let task = match self.command {
            Command::Run(args) => {
                let config = ValidConfig::load(&args.config)?;
                log.format = flag.unwrap_or(config.log.format);
                log.default_filter.clone_from(&config.log.level);
                Task::Run(Box::new(config))
            }
            other => Task::Other(Box::new(other)),
        };
        Ok(Invocation { log, task })
    }
}

impl Invocation {
    /// Run the command.
    ///
    /// # Errors
    /// Whatever the subcommand reports; `main` prints it with [`describe`]
    /// and exits non-zero.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut out = std::io::stdout().lock();
        let command = match self.task {
            Task::Run(config) => return run::run(*config),
            Task::Other(command) => *command,
        };
        match command {
            // Read in `prepare`: never reaches here.
            Command::Run(args) => run::run(ValidConfig::load(&args.config)?),
            Command::Pki(args) => pki::run(&args, &mut out).map(|()| ExitCode::SUCCESS),
            Command::Device(args) => device::run(&args, &mut out).map(|()| ExitCode::SUCCESS),
            Command::Audit(args) => audit::run(&args, &mut out),
            Command::Access(args) => access::run_cli(args, &mut out).map(|()| ExitCode::SUCCESS),
            Command::Ota(args) => ota::run(&args, &mut out),
            Command::Backup(args) => backup::run_backup(&args, &mut out),
            Command::Restore(args) => backup::run_restore(&args, &mut out),
        }
    }
}
