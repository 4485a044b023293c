//! The append-only, hash-chained audit log.
//!
//! Every connection, refusal, policy violation, registry change and admin
//! action becomes one row through [`AuditLog::append`]. Each row stores the
//! SHA-256 of the previous row's canonical content (`prev_hash`) and of its
//! own (`hash`); the canonical content is the JSON array
//! `[id, ts, actor, action, subject, outcome, detail, prev_hash]`.
//! [`AuditLog::verify`] walks the chain and names every row that was edited,
//! deleted or moved; `gateway audit verify` prints that report. SQLite
//! triggers refuse `UPDATE` and `DELETE` on the table, so a change needs
//! deliberate tampering with the file, which the chain then reveals.
//!
//! Appends run in `BEGIN IMMEDIATE` transactions, so several connections
//! (the running gateway and a CLI) extend one chain without forking it.
//! Removing rows from the *end* of the log leaves a valid, shorter chain;
//! signed anchors of the chain head kept outside the gateway reveal it
//! ([`anchor`]).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod anchor;
pub mod syslog;

/// `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What went wrong with the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database could not be opened.
    #[error(transparent)]
    Open(#[from] crate::db::DbError),
    /// A query failed.
    #[error("audit log database error: {0}; check disk space and permissions of the data dir")]
    Sqlite(#[from] rusqlite::Error),
    /// Writing the export failed.
    #[error("cannot write audit export: {0}")]
    Io(#[from] std::io::Error),
    /// The connection lock was poisoned by a panic elsewhere.
    #[error("audit log connection lock poisoned; restart the gateway")]
    Poisoned,
    /// The blocking task was cancelled.
    #[error("audit task failed: {0}")]
    Join(String),
}

/// Outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action was allowed / succeeded.
    Allowed,
    /// The action was refused.
    Refused,
    /// Informational (a state change, a disconnect).
    Info,
}

impl Outcome {
    /// The stored text.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Refused => "refused",
            Outcome::Info => "info",
        }
    }
}

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Who acted: `device:<id>`, `admin:<token id>`, `cli`, `gateway`, or a
    /// peer address for unauthenticated peers.
    pub actor: String,
    /// What was done, dotted: `edge.connect`, `edge.violation`,
    /// `registry.revoke`, `admin.token.create`, ...
    pub action: String,
    /// What it was done to (a device id, a token id, a topic).
    pub subject: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Structured detail (never secrets or vitals).
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// A new event with empty detail.
    #[must_use]
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            outcome,
            detail: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// Attach structured detail.
    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Row id, 1-based and gapless in an untampered log.
    pub id: i64,
    /// When it was appended.
    pub ts: DateTime<Utc>,
    /// See [`AuditEvent::actor`].
    pub actor: String,
    /// See [`AuditEvent::action`].
    pub action: String,
    /// See [`AuditEvent::subject`].
    pub subject: String,
    /// `allowed`, `refused` or `info`.
    pub outcome: String,
    /// Detail as canonical JSON text.
    pub detail: String,
    /// Hash of the previous row.
    pub prev_hash: String,
    /// Hash of this row.
    pub hash: String,
}

impl AuditRecord {
    /// The detail parsed back to JSON (`null` if the stored text is not JSON).
    #[must_use]
    pub fn detail_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.detail).unwrap_or(serde_json::Value::Null)
    }
}

/// One problem [`AuditLog::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChainProblem {
    /// The row at which the chain breaks.
    pub row_id: i64,
    /// What is wrong there.
    pub problem: String,
}

/// Result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Rows checked.
    pub rows: u64,
    /// Problems found, in row order (empty = intact).
    pub problems: Vec<ChainProblem>,
}

impl VerifyReport {
    /// True if no problem was found.
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How [`AuditLog::export_as`] writes rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per row, the fields of [`AuditRecord`].
    JsonLines,
    /// One RFC 5424 message per row ([`syslog`]), from `hostname`.
    Syslog {
        /// The HOSTNAME field.
        hostname: String,
    },
}

/// Handle on the audit log; cheap to clone. Methods block on SQLite: call
/// them from `spawn_blocking` or use the `_async` variants.
#[derive(Clone)]
pub struct AuditLog {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

/// `[actor, action, subject, outcome, detail, prev_hash]` of a row.
type Fields<'a> = [&'a str; 6];

fn canonical(id: i64, ts_ms: i64, f: Fields<'_>) -> String {
    serde_json::json!([id, ts_ms, f[0], f[1], f[2], f[3], f[4], f[5]]).to_string()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Append `event` inside an open transaction (used by the registry so a state
/// change and its audit row commit together). The transaction should be
/// `IMMEDIATE` so the chain head cannot move underneath it.
///
/// # Errors
/// [`AuditError::Sqlite`] if a statement fails.
pub fn append_in(tx: &Transaction<'_>, event: &AuditEvent) -> Result<AuditRecord, AuditError> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (id, prev_hash) = match last {
        Some((id, hash)) => (id + 1, hash),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let now = Utc::now();
    let ts_ms = now.timestamp_millis();
    let detail = event.detail.to_string();
    let outcome = event.outcome.as_str();
    let hash = sha256_hex(&canonical(
        id,
        ts_ms,
        [
            &event.actor,
            &event.action,
            &event.subject,
            outcome,
            &detail,
            &prev_hash,
        ],
    ));
    tx.prepare_cached(
        "INSERT INTO audit_log (id, ts, actor, action, subject, outcome, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        ts_ms,
        event.actor,
        event.action,
        event.subject,
        outcome,
        detail,
        prev_hash,
        hash
    ])?;
    Ok(AuditRecord {
        id,
        ts: ms_to_time(ts_ms),
        actor: event.actor.clone(),
        action: event.action.clone(),
        subject: event.subject.clone(),
        outcome: outcome.to_owned(),
        detail,
        prev_hash,
        hash,
    })
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<(AuditRecord, i64)> {
    let ts_ms: i64 = r.get(1)?;
    Ok((
        AuditRecord {
            id: r.get(0)?,
            ts: ms_to_time(ts_ms),
            actor: r.get(2)?,
            action: r.get(3)?,
            subject: r.get(4)?,
            outcome: r.get(5)?,
            detail: r.get(6)?,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
        },
        ts_ms,
    ))
}

const SELECT_ALL: &str =
    "SELECT id, ts, actor, action, subject, outcome, detail, prev_hash, hash FROM audit_log";

impl AuditLog {
    /// Open the audit log in the gateway database at `path`.
    ///
    /// # Errors
    /// [`AuditError::Open`] if the database cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        Ok(Self::from_connection(crate::db::open(path)?))
    }

    /// Wrap an already opened and migrated connection.
    #[must_use]
    pub fn from_connection(conn: Connection) -> Self {
        Self {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, AuditError> {
        self.conn.lock().map_err(|_| AuditError::Poisoned)
    }

    /// Append one event (blocking).
    ///
    /// # Errors
    /// [`AuditError`] if the row cannot be written.
    pub fn append(&self, event: &AuditEvent) -> Result<AuditRecord, AuditError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let record = append_in(&tx, event)?;
        tx.commit()?;
        Ok(record)
    }

    /// Append one event from async code (runs on the blocking pool).
    ///
    /// # Errors
    /// As [`AuditLog::append`].
    pub async fn append_async(&self, event: AuditEvent) -> Result<AuditRecord, AuditError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.append(&event))
            .await
            .map_err(|e| AuditError::Join(e.to_string()))?
    }

    /// All rows in id order (blocking). Prefer [`AuditLog::export`] for big logs.
    ///
    /// # Errors
    /// [`AuditError::Sqlite`] on a query failure.
    pub fn all(&self) -> Result<Vec<AuditRecord>, AuditError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!("{SELECT_ALL} ORDER BY id"))?;
        let rows = stmt.query_map([], row_to_record)?;
        rows.map(|r| r.map(|(rec, _)| rec).map_err(AuditError::from))
            .collect()
    }

    /// Rows for `subject` and (optionally) `action`, in id order.
    ///
    /// # Errors
    /// [`AuditError::Sqlite`] on a query failure.
    pub fn find(
        &self,
        subject: &str,
        action: Option<&str>,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT_ALL} WHERE subject = ?1 AND (?2 IS NULL OR action = ?2) ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![subject, action], row_to_record)?;
        rows.map(|r| r.map(|(rec, _)| rec).map_err(AuditError::from))
            .collect()
    }

    /// The newest `limit` rows, newest first.
    ///
    /// # Errors
    /// [`AuditError::Sqlite`] on a query failure.
    pub fn recent(&self, limit: u32) -> Result<Vec<AuditRecord>, AuditError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&format!("{SELECT_ALL} ORDER BY id DESC LIMIT ?1"))?;
        let rows = stmt.query_map(params![limit], row_to_record)?;
        rows.map(|r| r.map(|(rec, _)| rec).map_err(AuditError::from))
            .collect()
    }

    /// The chain head: the last row and the row count; `None` while the
    /// log is empty.
    ///
    /// # Errors
    /// [`AuditError::Sqlite`] on a query failure.
    pub fn head(&self) -> Result<Option<anchor::ChainHead>, AuditError> {
        let conn = self.lock()?;
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))?;
        let last = conn
            .query_row(
                "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        Ok(last.map(|(row_id, hash)| anchor::ChainHead {
            row_id,
            hash,
            rows: u64::try_from(rows).unwrap_or(0),
        }))
    }

    /// Walk the whole chain and report every break.
    ///
    /// # Errors
    /// [`AuditError::Sqlite`] on a query failure (not on tampering, which is
    /// reported in the [`VerifyReport`]).
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!("{SELECT_ALL} ORDER BY id"))?;
        let mut rows = stmt.query([])?;
        let mut report = VerifyReport {
            rows: 0,
            problems: Vec::new(),
        };
        let mut expected_prev = GENESIS_HASH.to_owned();
        let mut last_id = 0_i64;
        while let Some(row) = rows.next()? {
            let (rec, ts_ms) = row_to_record(row)?;
            report.rows += 1;
            if rec.id != last_id + 1 {
                report.problems.push(ChainProblem {
                    row_id: rec.id,
                    problem: format!(
                        "row ids jump from {last_id} to {}: rows {}..={} were deleted",
                        rec.id,
                        last_id + 1,
                        rec.id - 1
                    ),
                });
            }
            if rec.prev_hash != expected_prev {
                report.problems.push(ChainProblem {
                    row_id: rec.id,
                    problem: format!(
                        "prev_hash does not match row {last_id}: the row before it was edited, removed or moved"
                    ),
                });
            }
            let actual = sha256_hex(&canonical(
                rec.id,
                ts_ms,
                [
                    &rec.actor,
                    &rec.action,
                    &rec.subject,
                    &rec.outcome,
                    &rec.detail,
                    &rec.prev_hash,
                ],
            ));
            if actual != rec.hash {
                report.problems.push(ChainProblem {
                    row_id: rec.id,
                    problem: "content does not match its stored hash: this row was edited".into(),
                });
            }
            expected_prev = rec.hash;
            last_id = rec.id;
        }
        Ok(report)
    }

    /// Write every row as one JSON object per line; returns the row count.
    ///
    /// # Errors
    /// [`AuditError`] on a query or write failure.
    pub fn export(&self, out: &mut dyn Write) -> Result<u64, AuditError> {
        self.export_as(out, ExportFormat::JsonLines)
    }

    /// Write every row, one per line, in `format`; returns the row count.
    ///
    /// # Errors
    /// [`AuditError`] on a query or write failure.
    pub fn export_as(&self, out: &mut dyn Write, format: ExportFormat) -> Result<u64, AuditError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!("{SELECT_ALL} ORDER BY id"))?;
        let mut rows = stmt.query([])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let (rec, _) = row_to_record(row)?;
            let line = match &format {
                ExportFormat::JsonLines => {
                    serde_json::to_string(&rec).map_err(std::io::Error::other)?
                }
                ExportFormat::Syslog { hostname } => syslog::line(&rec, hostname),
            };
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            n += 1;
        }
        out.flush()?;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A log of `n` rows in a temp dir.
    pub(crate) fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("gw.db")).unwrap();
        for i in 0..n {
            log.append(
                &AuditEvent::new("cli", "test.event", format!("s{i}"), Outcome::Info)
                    .with_detail(serde_json::json!({"i": i})),
            )
            .unwrap();
        }
        (dir, log)
    }

    /// Five rows, changed by `sql` behind the log's back, then verified.
    fn verify_after(sql: &str) -> VerifyReport {
        let (d, log) = log_with(5);
        raw(&d).execute(sql, []).unwrap();
        log.verify().unwrap()
    }

    fn raw(dir: &tempfile::TempDir) -> Connection {
        let c = Connection::open(dir.path().join("gw.db")).unwrap();
        c.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
            .unwrap();
        c
    }

    #[test]
    fn intact_chain_verifies_and_exports() {
        let (_d, log) = log_with(5);
        let report = log.verify().unwrap();
        assert_eq!(report.rows, 5);
        assert!(report.is_intact(), "{report:?}");
        let mut out = Vec::new();
        assert_eq!(log.export(&mut out).unwrap(), 5);
        let lines: Vec<AuditRecord> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0].prev_hash, GENESIS_HASH);
        assert_eq!(lines[1].prev_hash, lines[0].hash);
    }

    #[test]
    fn triggers_refuse_update_and_delete() {
        let (d, _log) = log_with(2);
        let c = Connection::open(d.path().join("gw.db")).unwrap();
        assert!(c.execute("UPDATE audit_log SET actor = 'x'", []).is_err());
        assert!(c.execute("DELETE FROM audit_log", []).is_err());
    }

    #[test]
    fn detects_edit() {
        let report = verify_after("UPDATE audit_log SET subject = 'forged' WHERE id = 3");
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert_eq!(report.problems[0].row_id, 3);
        assert!(report.problems[0].problem.contains("edited"));
    }

    #[test]
    fn detects_edit_with_recomputed_hash() {
        let (d, log) = log_with(5);
        let c = raw(&d);
        let rec = &log.all().unwrap()[2];
        let ts: i64 = rec.ts.timestamp_millis();
        let forged = sha256_hex(&canonical(
            3,
            ts,
            [
                &rec.actor,
                &rec.action,
                "forged",
                &rec.outcome,
                &rec.detail,
                &rec.prev_hash,
            ],
        ));
        c.execute(
            "UPDATE audit_log SET subject = 'forged', hash = ?1 WHERE id = 3",
            params![forged],
        )
        .unwrap();
        let report = log.verify().unwrap();
        assert_eq!(report.problems[0].row_id, 4, "{report:?}");
    }

    #[test]
    fn detects_delete() {
        let report = verify_after("DELETE FROM audit_log WHERE id = 2");
        assert!(report.problems.iter().all(|p| p.row_id == 3), "{report:?}");
        assert!(report
            .problems
            .iter()
            .any(|p| p.problem.contains("deleted")));
    }

    #[test]
    fn detects_reorder() {
        let (d, log) = log_with(5);
        let c = raw(&d);
        // Swap the content of rows 2 and 4, keeping ids.
        c.execute_batch(
            "UPDATE audit_log SET id = -2 WHERE id = 2;
             UPDATE audit_log SET id = 2 WHERE id = 4;
             UPDATE audit_log SET id = 4 WHERE id = -2;",
        )
        .unwrap();
        let report = log.verify().unwrap();
        let ids: Vec<i64> = report.problems.iter().map(|p| p.row_id).collect();
        assert!(ids.contains(&2) && ids.contains(&4), "{report:?}");
    }

    #[test]
    fn two_handles_extend_one_chain() {
        let (d, log) = log_with(2);
        let other = AuditLog::open(&d.path().join("gw.db")).unwrap();
        other
            .append(&AuditEvent::new("cli", "x", "y", Outcome::Allowed))
            .unwrap();
        log.append(&AuditEvent::new("gw", "x", "z", Outcome::Refused))
            .unwrap();
        assert!(log.verify().unwrap().is_intact());
        assert_eq!(log.find("z", Some("x")).unwrap().len(), 1);
    }
}
