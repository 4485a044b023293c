//! `gateway backup --out F` and `gateway restore --from F`: a consistent
//! copy of the gateway database, and putting one back only if it can be
//! trusted.
//!
//! The backup uses SQLite's online backup API (`rusqlite::backup`), so it
//! runs beside a live gateway and copies one consistent state of every
//! table (registry, audit log, tokens, outbox, rollout state). The copy is
//! written under a temporary name, switched out of WAL mode (one
//! self-contained file), checked with `PRAGMA integrity_check` and an
//! audit-chain walk, made private (0600), synced, and only then renamed to
//! `F`. A restore checks the same on its own copy of `F` and refuses one
//! whose integrity check fails, whose schema is newer than this build, or
//! whose audit chain does not verify (a copy edited after it was taken);
//! it then migrates it forward, appends a `gateway.restore` audit row and
//! moves it into place. A database already in place is only replaced with
//! `--replace` (stop the gateway first); the replaced files are kept beside
//! it, renamed `gateway.db.replaced-<time>`.
//!
//! Not in the copy: key files (the outbox key, TLS keys), which live apart
//! from the database on purpose; back them up separately, under the
//! hospital's key-handling procedure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rusqlite::{Connection, OpenFlags};

use super::actor::cli_actor;
use super::config_arg::ConfigArg;
use crate::audit::{AuditError, AuditEvent, AuditLog, ChainProblem, Outcome};
use crate::context::create_private_dir;
use crate::db::DbError;

/// Pages copied per step of the online backup; the live gateway may write
/// between steps.
const PAGES_PER_STEP: std::ffi::c_int = 256;
/// Pause between steps, so a busy gateway is not starved.
const STEP_PAUSE: Duration = Duration::from_millis(5);
/// Chain problems quoted in a refusal (the rest are counted).
const PROBLEMS_SHOWN: usize = 5;

/// `gateway backup`
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Configuration (for the database location).
    #[command(flatten)]
    pub config: ConfigArg,
    /// File to write the copy to (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

/// `gateway restore`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Configuration (for the database location).
    #[command(flatten)]
    pub config: ConfigArg,
    /// A copy written by `gateway backup`.
    #[arg(long)]
    pub from: PathBuf,
    /// Replace a database already in `storage.data_dir` (stop the gateway
    /// first); the old files are kept as `gateway.db.replaced-<time>`.
    #[arg(long)]
    pub replace: bool,
}

/// Why a backup or restore failed; each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// There is no database to back up.
    #[error("no gateway database at {0}; check `storage.data_dir` in the configuration")]
    NoDatabase(PathBuf),
    /// The output file exists.
    #[error("{0} already exists; choose a new file for --out (a backup never overwrites)")]
    OutExists(PathBuf),
    /// The copy to restore does not exist.
    #[error("no backup file at {0}; pass the file `gateway backup --out` wrote")]
    NoCopy(PathBuf),
    /// A database is already in place.
    #[error("a gateway database already exists at {0}; stop the gateway and pass --replace to restore over it (the old files are kept), or point `storage.data_dir` at a fresh directory")]
    DatabaseExists(PathBuf),
    /// SQLite failed on a file.
    #[error("database error on {path} while {doing}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What was being done.
        doing: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("cannot {doing} {path}; check free space and permissions")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        doing: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A private file could not be created.
    #[error("cannot create {path} (mode 0600); check free space and permissions of its directory")]
    Create {
        /// The file.
        path: PathBuf,
        /// The key-file writer's error.
        #[source]
        source: wardgate_tls::keyfile::KeyFileError,
    },
    /// `PRAGMA integrity_check` found damage.
    #[error(
        "{path} failed SQLite's integrity check ({problems}); it is damaged: use another backup"
    )]
    Integrity {
        /// The file.
        path: PathBuf,
        /// The first problems SQLite reported.
        problems: String,
    },
    /// The file is not a gateway database.
    #[error("{0} is not a gateway database (no schema version); pass a file written by `gateway backup`")]
    NotGateway(PathBuf),
    /// Written by a newer gateway.
    #[error("{path} has schema version {found}, newer than this gateway knows ({known}); restore it with the newer gateway")]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: usize,
        /// This build's version.
        known: usize,
    },
    /// The copy's audit chain does not verify.
    #[error("refusing to restore {path}: its audit chain does not verify ({count} problem(s): {shown}); the copy was altered after it was taken; keep it as evidence and restore an older backup")]
    AuditBroken {
        /// The file.
        path: PathBuf,
        /// How many problems.
        count: usize,
        /// The first ones, `row N: problem; ...`.
        shown: String,
    },
    /// The audit log of the copy could not be read or written.
    #[error("audit log of {path}")]
    Audit {
        /// The file.
        path: PathBuf,
        /// The audit error.
        #[source]
        source: AuditError,
    },
    /// The copy could not be migrated to this build's schema.
    #[error("cannot bring {path} to this gateway's schema")]
    Migrate {
        /// The file.
        path: PathBuf,
        /// The migration error.
        #[source]
        source: DbError,
    },
}

/// What a checked copy holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// `PRAGMA user_version` of the copy.
    pub schema_version: usize,
    /// Enrolled devices (any state).
    pub devices: u64,
    /// Audit rows.
    pub audit_rows: u64,
    /// Audit chain problems (empty: intact).
    pub chain_problems: Vec<ChainProblem>,
}

fn sql<'a>(
    path: &'a Path,
    doing: &'static str,
) -> impl FnOnce(rusqlite::Error) -> BackupError + 'a {
    move |source| BackupError::Sqlite {
        path: path.to_path_buf(),
        doing,
        source,
    }
}

fn io<'a>(path: &'a Path, doing: &'static str) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        doing,
        source,
    }
}

/// `<file>.<tag>-<pid>` beside `file`: a name no other run uses.
fn sibling(file: &Path, tag: &str) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{tag}-{}", std::process::id()));
    file.with_file_name(name)
}

/// `file` with `suffix` appended to its name (`gateway.db` + `-wal`).
fn with_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Check a copy: integrity, schema version, audit chain, and count what it
/// holds. Consumes the connection (the audit walk needs it).
///
/// # Errors
/// [`BackupError::Integrity`], [`BackupError::NotGateway`],
/// [`BackupError::TooNew`], or a read failure. A broken chain is reported
/// in [`CopyReport::chain_problems`], not as an error.
pub fn check_copy(conn: Connection, path: &Path) -> Result<CopyReport, BackupError> {
    let problems: Vec<String> = {
        let mut stmt = conn
            .prepare("PRAGMA integrity_check")
            .map_err(sql(path, "running the integrity check"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql(path, "running the integrity check"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql(path, "running the integrity check"))?
    };
    if problems != ["ok"] {
        return Err(BackupError::Integrity {
            path: path.to_path_buf(),
            problems: problems.into_iter().take(3).collect::<Vec<_>>().join("; "),
        });
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql(path, "reading the schema version"))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version == 0 {
        return Err(BackupError::NotGateway(path.to_path_buf()));
    }
    if version > crate::db::schema_version() {
        return Err(BackupError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known: crate::db::schema_version(),
        });
    }
    let devices: i64 = conn
        .query_row("SELECT COUNT(*) FROM devices", [], |r| r.get(0))
        .map_err(sql(path, "counting devices"))?;
    let report = AuditLog::from_connection(conn)
        .verify()
        .map_err(|source| BackupError::Audit {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(CopyReport {
        schema_version: version,
        devices: u64::try_from(devices).unwrap_or_default(),
        audit_rows: report.rows,
        chain_problems: report.problems,
    })
}

/// Write a consistent, checked copy of the database `db` to `out` (which
/// must not exist). The copy is kept even when its audit chain is broken
/// (it is evidence); the report says so.
///
/// # Errors
/// [`BackupError`] naming the file and step that failed; nothing is left at
/// `out` then.
pub fn backup_database(db: &Path, out: &Path) -> Result<CopyReport, BackupError> {
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.to_path_buf()));
    }
    if out.exists() {
        return Err(BackupError::OutExists(out.to_path_buf()));
    }
    let partial = sibling(out, "partial");
    let result = write_copy(db, &partial).and_then(|()| {
        let conn = Connection::open(&partial).map_err(sql(&partial, "opening the copy"))?;
        check_copy(conn, &partial)
    });
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if out.exists() {
        let _ = std::fs::remove_file(&partial);
        return Err(BackupError::OutExists(out.to_path_buf()));
    }
    std::fs::rename(&partial, out).map_err(io(out, "move the finished copy to"))?;
    sync_parent(out);
    Ok(report)
}

/// The online backup of `db` into the new file `partial`: one file, mode
/// 0600, synced.
fn write_copy(db: &Path, partial: &Path) -> Result<(), BackupError> {
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(db, "opening the database to back up"))?;
    crate::db::wait_for_other_writers(&src).map_err(sql(db, "opening the database to back up"))?;
    // Create the file private before SQLite writes anything into it.
    wardgate_tls::keyfile::write_new(partial, b"", 0o600).map_err(|source| {
        BackupError::Create {
            path: partial.to_path_buf(),
            source,
        }
    })?;
    let mut dst = Connection::open(partial).map_err(sql(partial, "creating the copy"))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)
            .map_err(sql(partial, "starting the online backup"))?;
        backup
            .run_to_completion(PAGES_PER_STEP, STEP_PAUSE, None)
            .map_err(sql(partial, "copying pages"))?;
    }
    // A copy of a WAL database is itself in WAL mode; make it one file.
    let _mode: String = dst
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(sql(partial, "switching the copy to a single file"))?;
    drop(dst);
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(io(partial, "sync"))?;
    Ok(())
}

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let dir = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        // Best effort: a directory that cannot be synced still holds the file.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

/// Restore the copy `from` as the database `db`, refusing one that fails
/// [`check_copy`] or whose audit chain does not verify. With `replace`, an
/// existing database (and its WAL files) is moved aside first.
///
/// # Errors
/// [`BackupError::AuditBroken`] and the other refusals of
/// [`check_copy`]; [`BackupError::DatabaseExists`] without `replace`.
pub fn restore_database(
    from: &Path,
    db: &Path,
    replace: bool,
    actor: &str,
) -> Result<CopyReport, BackupError> {
    if !from.is_file() {
        return Err(BackupError::NoCopy(from.to_path_buf()));
    }
    if db.exists() && !replace {
        return Err(BackupError::DatabaseExists(db.to_path_buf()));
    }
    let staging = sibling(db, "restoring");
    let result = stage(from, &staging, actor);
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(with_suffix(&staging, suffix));
            }
            return Err(e);
        }
    };
    if db.exists() {
        let aside = with_suffix(
            db,
            &format!(".replaced-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
        );
        for suffix in ["", "-wal", "-shm"] {
            let file = with_suffix(db, suffix);
            if file.exists() {
                std::fs::rename(&file, with_suffix(&aside, suffix))
                    .map_err(io(&file, "move aside"))?;
            }
        }
    }
    std::fs::rename(&staging, db).map_err(io(db, "move the restored database to"))?;
    sync_parent(db);
    Ok(report)
}

/// Copy `from` to `staging`, check it, migrate it and record the restore.
fn stage(from: &Path, staging: &Path, actor: &str) -> Result<CopyReport, BackupError> {
    let bytes = std::fs::read(from).map_err(io(from, "read"))?;
    wardgate_tls::keyfile::write_new(staging, &bytes, 0o600).map_err(|source| {
        BackupError::Create {
            path: staging.to_path_buf(),
            source,
        }
    })?;
    let conn = Connection::open(staging).map_err(sql(staging, "opening the copy"))?;
    let report = check_copy(conn, from)?;
    if !report.chain_problems.is_empty() {
        let shown = report
            .chain_problems
            .iter()
            .take(PROBLEMS_SHOWN)
            .map(|p| format!("row {}: {}", p.row_id, p.problem))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(BackupError::AuditBroken {
            path: from.to_path_buf(),
            count: report.chain_problems.len(),
            shown,
        });
    }
    let audit = crate::db::open(staging)
        .map(AuditLog::from_connection)
        .map_err(|source| BackupError::Migrate {
            path: staging.to_path_buf(),
            source,
        })?;
    audit
        .append(
            &AuditEvent::new(actor, "gateway.restore", "gateway", Outcome::Info).with_detail(
                serde_json::json!({
                    "from": from.display().to_string(),
                    "schema_version": report.schema_version,
                    "audit_rows": report.audit_rows,
                    "devices": report.devices,
                }),
            ),
        )
        .map_err(|source| BackupError::Audit {
            path: staging.to_path_buf(),
            source,
        })?;
    drop(audit);
    Ok(report)
}

/// Run `gateway backup`: exit 0 with a summary, or 1 when the copy was
/// written but its audit chain is broken (the copy is evidence).
///
/// # Errors
/// The configuration cannot be read, or [`backup_database`] fails.
pub fn run_backup(args: &BackupArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let report = backup_database(&config.storage.db_path(), &args.out)?;
    writeln!(
        out,
        "backup written to {}: schema version {}, {} devices, {} audit rows, integrity ok",
        args.out.display(),
        report.schema_version,
        report.devices,
        report.audit_rows
    )?;
    if report.chain_problems.is_empty() {
        writeln!(out, "audit chain intact")?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(
            out,
            "audit chain BROKEN in the live database ({} problem(s)); the copy is kept as evidence, but `gateway restore` will refuse it; run `gateway audit verify`",
            report.chain_problems.len()
        )?;
        Ok(ExitCode::from(1))
    }
}

/// Run `gateway restore`.
///
/// # Errors
/// The configuration cannot be read, the data dir cannot be created, or
/// [`restore_database`] refuses the copy.
pub fn run_restore(args: &RestoreArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    create_private_dir(&config.storage.data_dir)?;
    let db = config.storage.db_path();
    let report = restore_database(&args.from, &db, args.replace, &cli_actor())?;
    writeln!(
        out,
        "restored {} to {}: schema version {}, {} devices, {} audit rows, audit chain intact",
        args.from.display(),
        db.display(),
        report.schema_version,
        report.devices,
        report.audit_rows
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_siblings_with_suffixes() {
        let p = Path::new("/d/gateway.db");
        assert_eq!(with_suffix(p, "-wal"), PathBuf::from("/d/gateway.db-wal"));
        let s = sibling(p, "restoring");
        assert_eq!(s.parent(), Some(Path::new("/d")));
        assert!(s
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("gateway.db.restoring-"));
    }

    #[test]
    fn a_file_that_is_not_a_gateway_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = restore_database(&other, &dir.path().join("gateway.db"), false, "cli:test")
            .unwrap_err();
        assert!(matches!(err, BackupError::NotGateway(_)), "{err}");
        assert!(!dir.path().join("gateway.db").exists());
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not sqlite at all, not even close to it").unwrap();
        assert!(
            restore_database(&junk, &dir.path().join("gateway.db"), false, "cli:test").is_err()
        );
        assert!(!dir.path().join("gateway.db").exists());
    }
}
