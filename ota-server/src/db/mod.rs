//! The server's SQLite database, owned by one dedicated thread.
//!
//! [`Db`] is a cheap handle; every query is a closure sent over a bounded
//! channel (capacity [`QUEUE_DEPTH`]; senders wait when it is full) to the
//! thread that owns the [`rusqlite::Connection`], so async tasks never block
//! on SQLite. The database runs in WAL mode with `synchronous=FULL`, and its
//! schema is managed by [`migrations`].

pub mod migrations;

use std::path::Path;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for the database thread before senders have to wait.
pub const QUEUE_DEPTH: usize = 256;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Database failures.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file could not be opened or configured.
    #[error("cannot open database {path}: {source}; check that data_dir is writable")]
    Open {
        /// The database path.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The schema could not be migrated.
    #[error(transparent)]
    Migration(#[from] migrations::MigrationError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The database thread is gone (the server is shutting down).
    #[error("database thread has stopped; restart ota-server")]
    Stopped,
}

/// Handle to the database thread.
#[derive(Clone, Debug)]
pub struct Db {
    tx: mpsc::Sender<Job>,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, migrates it and
    /// starts its thread. The thread ends when the last handle is dropped.
    ///
    /// # Errors
    /// [`DbError`] when the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let open_err = |source| DbError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
            .and_then(|()| conn.busy_timeout(std::time::Duration::from_secs(5)))
            .map_err(open_err)?;
        migrations::migrate(&mut conn)?;
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("ota-db".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| DbError::Open {
                path: path.display().to_string(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok(Self { tx })
    }

    /// Runs `f` on the database thread and returns its result.
    ///
    /// # Errors
    /// Whatever `f` returns, or [`DbError::Stopped`].
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |c| {
                let _ = reply.send(f(c));
            }))
            .await
            .map_err(|_| DbError::Stopped)?;
        rx.await.map_err(|_| DbError::Stopped)?
    }

    /// Appends an audit row.
    ///
    /// # Errors
    /// [`DbError`] when the insert fails.
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), DbError> {
        self.call(move |c| {
            c.prepare_cached(
                "INSERT INTO audit (at, actor, action, outcome, code, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(rusqlite::params![
                now_rfc3339(),
                entry.actor,
                entry.action,
                entry.outcome,
                entry.code,
                entry.detail
            ])?;
            Ok(())
        })
        .await
    }

    /// The most recent `limit` audit rows, newest first.
    ///
    /// # Errors
    /// [`DbError`] when the query fails.
    pub async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditRow>, DbError> {
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, at, actor, action, outcome, code, detail FROM audit ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = st
                .query_map([limit], |r| {
                    Ok(AuditRow {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        outcome: r.get(4)?,
                        code: r.get(5)?,
                        detail: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

/// An audit row to append.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who acted (`manufacturer:acme`, `admin:ops`, `gateway:ward-3a`, `anonymous`).
    pub actor: String,
    /// What was attempted (`release.upload`, `campaign.create`, ...).
    pub action: String,
    /// `ok` or `refused`.
    pub outcome: String,
    /// Stable error code when refused.
    pub code: Option<String>,
    /// Human-readable detail (never secrets).
    pub detail: String,
}

/// An audit row as stored.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    /// Row id.
    pub id: i64,
    /// RFC 3339 time.
    pub at: String,
    /// Who acted.
    pub actor: String,
    /// What was attempted.
    pub action: String,
    /// `ok` or `refused`.
    pub outcome: String,
    /// Stable error code when refused.
    pub code: Option<String>,
    /// Detail.
    pub detail: String,
}

/// Current UTC time, RFC 3339 with seconds.
#[must_use]
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
