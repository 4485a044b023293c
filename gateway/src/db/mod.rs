//! The gateway's one SQLite database: opening it in WAL mode and applying
//! forward migrations tracked in `PRAGMA user_version`.
//!
//! Each component owns its tables in its own migration file; the list below
//! is the single order in which they are applied. Components open their own
//! connection through [`open`] (SQLite in WAL mode serves several connections
//! of one process well), and keep it on a dedicated thread or in
//! `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

/// Forward migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "core: registry and audit log",
        include_str!("migrations/0001_core.sql"),
    ),
    (
        "admin: access tokens",
        include_str!("migrations/0002_admin.sql"),
    ),
    ("uplink: outbox", include_str!("migrations/0003_outbox.sql")),
    (
        "ota: rollout campaigns and device update state",
        include_str!("migrations/0005_rollout.sql"),
    ),
    (
        "edge: replay state (recent payload digests per device)",
        include_str!("migrations/0006_replay.sql"),
    ),
    (
        "anomaly: alerts",
        include_str!("migrations/0007_anomaly.sql"),
    ),
    (
        "edge: persistent device sessions and their subscriptions",
        include_str!("migrations/0008_sessions.sql"),
    ),
];

/// What went wrong opening or migrating the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file could not be opened or configured.
    #[error("cannot open gateway database {path}: {source}; check the path and permissions of `storage.data_dir`")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A migration failed; the database is left at the previous version.
    #[error("migration to schema version {version} ({name}) failed: {source}")]
    Migrate {
        /// The version being applied.
        version: usize,
        /// Its description.
        name: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The file was written by a newer gateway.
    #[error("database {path} has schema version {found}, newer than this gateway knows ({known}); run the newer gateway or restore a backup")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Version found in the file.
        found: usize,
        /// Highest version this build knows.
        known: usize,
    },
}

/// The schema version this build creates.
#[must_use]
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}

/// How long a connection waits for another connection's write lock
/// before its statement fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Retry interval of [`wait_for_the_write_lock`].
const BUSY_RETRY: Duration = Duration::from_micros(250);

/// The busy handler of every connection: retry every [`BUSY_RETRY`] until
/// [`BUSY_TIMEOUT`]. SQLite's own (`busy_timeout`) backs off to 100 ms
/// sleeps and is not woken when the lock frees, so when many short writers
/// (a burst of 1,000 anomaly alerts, audit rows of a reconnect storm)
/// meet the outbox's group commit, the commit sleeps through hundreds of
/// milliseconds of free lock and every device's PUBACK waits with it
/// (PUBACK p99 330 ms at 1,000 devices). Transactions here hold the lock
/// for well under a millisecond, so a fine retry costs little.
fn wait_for_the_write_lock(attempts: i32) -> bool {
    thread_local! {
        // When this thread's current wait began (SQLite calls the handler
        // with 0 first, on the thread running the statement).
        static SINCE: std::cell::Cell<Option<std::time::Instant>> =
            const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    let since = SINCE.with(|s| {
        if attempts == 0 || s.get().is_none() {
            s.set(Some(now));
        }
        s.get().unwrap_or(now)
    });
    if now.duration_since(since) >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_RETRY);
    true
}

/// Make `conn` wait for other connections' locks with
/// [`wait_for_the_write_lock`]: every connection to a gateway database,
/// [`open`]'s and the backup's.
///
/// # Errors
/// The SQLite error if the handler cannot be set.
pub fn wait_for_other_writers(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_handler(Some(wait_for_the_write_lock))
}

/// Open (creating if needed) the database at `path`, switch it to WAL and
/// apply any pending migrations, each in its own transaction.
///
/// # Errors
/// [`DbError`] if the file cannot be opened, is newer than this build, or a
/// migration fails.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    let open_err = |source| DbError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    wait_for_other_writers(&conn).map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let open_err = |source| DbError::Open {
        path: path.to_path_buf(),
        source,
    };
    let current: usize = conn
        .pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
        .map_err(open_err)?
        .try_into()
        .unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        let fail = |source| DbError::Migrate {
            version,
            name,
            source,
        };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        // At most a handful of migrations: the conversion cannot fail.
        let stamp = i64::try_from(version).unwrap_or(i64::MAX);
        tx.pragma_update(None, "user_version", stamp)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(
            version,
            migration = name,
            "applied gateway database migration"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_fresh_database_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        drop(open(&path).unwrap());
        let conn = open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, schema_version());
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_writer_waits_for_another_connections_write_lock_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        let mut holder = open(&path).unwrap();
        let waiter = open(&path).unwrap();
        holder
            .execute_batch("CREATE TABLE t (v INTEGER); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            started_tx.send(()).unwrap();
            waiter.execute("INSERT INTO t VALUES (2)", [])
        });
        started_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        holder.execute_batch("COMMIT").unwrap();
        assert_eq!(writer.join().unwrap().unwrap(), 1);
        let n: i64 = holder
            .transaction()
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn refuses_newer_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 999).unwrap();
        }
        assert!(matches!(
            open(&path),
            Err(DbError::TooNew { found: 999, .. })
        ));
    }
}
